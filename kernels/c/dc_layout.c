/* NCHW -> blocked (NCHWc) conversion, multi-threaded.
 *
 * A user with plain NCHW tensors pays one conversion in and one out around every blocked convolution. numpy's
 * copy into the blocked order runs at 3-9 GB/s here; this one at 10-38 GB/s on one thread (benchmarks/
 * conversion_ab.py). The way back stays in numpy, whose copy out of the blocked order is as fast as the
 * straightforward C loops (measured: 0.4-1.3x of numpy). Each task is one (image, channel block, run of pixels):
 * the blocked side is written contiguously, the NCHW side read as DC_LANES streams, one per channel of the block.
 * Runs of pixels keep both cores busy on a layer with a single channel block (the C_i = 3 input of a network).
 *
 * DC_LANES (the blocked layout's channels per block) is defined before this text by kernels/convert.py.
 * Layouts: x[n][c][hw], xb[n][ceil(c / DC_LANES)][hw][DC_LANES], channels past c zero in xb.
 */
#include <stddef.h>

#define DC_RUN 2048 /* pixels per task: 8 KiB of one channel plane */

static void dc_task(long t, long nb, long runs, long hw, long *b, long *cb, long *p0, long *p1)
{
    *b = t / (nb * runs);
    *cb = (t / runs) % nb;
    *p0 = (t % runs) * DC_RUN;
    *p1 = *p0 + DC_RUN < hw ? *p0 + DC_RUN : hw;
}

int dc_to_blocked(const float *restrict x, float *restrict xb, long n, long c, long hw, int threads)
{
    if (n < 1 || c < 1 || hw < 1 || threads < 1) return -1;
    const long nb = (c + DC_LANES - 1) / DC_LANES, runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * nb * runs;
    #pragma omp parallel for schedule(static) num_threads(threads) if(threads > 1 && tasks > 1)
    for (long t = 0; t < tasks; ++t) {
        long b, cb, p0, p1;
        dc_task(t, nb, runs, hw, &b, &cb, &p0, &p1);
        const long real = c - cb * DC_LANES < DC_LANES ? c - cb * DC_LANES : DC_LANES;
        const float *restrict src = x + (b * c + cb * DC_LANES) * hw;
        float *restrict dst = xb + (b * nb + cb) * hw * DC_LANES;
        if (real == DC_LANES) { /* constant trip count: unrolled into one vector store per pixel */
            for (long p = p0; p < p1; ++p)
                for (int l = 0; l < DC_LANES; ++l) dst[p * DC_LANES + l] = src[l * hw + p];
        } else {
            for (long p = p0; p < p1; ++p) {
                int l = 0;
                for (; l < real; ++l) dst[p * DC_LANES + l] = src[l * hw + p];
                for (; l < DC_LANES; ++l) dst[p * DC_LANES + l] = 0.0f;
            }
        }
    }
    return 0;
}
