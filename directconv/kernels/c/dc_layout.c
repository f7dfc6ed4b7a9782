/* NCHW <-> blocked (NCHWc) conversions, multi-threaded.
 *
 * A user with plain NCHW tensors pays one conversion in and one out around every blocked convolution, so the way
 * in and the way back run here, faster than numpy's strided copies (docs/design.md).
 * Each task is one (image, channel block, run of pixels):
 * the blocked side is written contiguously, the NCHW side read as DC_LANES streams, one per channel of the block.
 * Runs of pixels keep both cores busy on a layer with a single channel block (the C_i = 3 input of a network).
 *
 * DC_LANES (the blocked layout's channels per block) and the copies of dc_transpose.h come before this text
 * (kernels/convert.py).
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
        const int real = c - cb * DC_LANES < DC_LANES ? (int)(c - cb * DC_LANES) : DC_LANES;
        dc_planes_to_block(x + (b * c + cb * DC_LANES) * hw, xb + (b * nb + cb) * hw * DC_LANES, hw, p0, p1, real);
    }
    return 0;
}

/* Blocked -> NCHW, the way back. Straight loops, channel-outer or pixel-outer, lost to numpy's strided copy
 * (docs/design.md): each writes DC_LANES planes a float at a time. Here four pixels by four lanes are one 4x4
 * transpose of 16-byte vectors (SSE2 and NEON have them without ISA flags), so both sides move whole vectors.
 * Tasks are (image, channel block, run of pixels) as on the way in; only the real channels are written. */
int dc_from_blocked(const float *restrict xb, float *restrict x, long n, long c, long hw, int threads)
{
    if (n < 1 || c < 1 || hw < 1 || threads < 1) return -1;
    const long nb = (c + DC_LANES - 1) / DC_LANES, runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * nb * runs;
    #pragma omp parallel for schedule(static) num_threads(threads) if(threads > 1 && tasks > 1)
    for (long t = 0; t < tasks; ++t) {
        long b, cb, p0, p1;
        dc_task(t, nb, runs, hw, &b, &cb, &p0, &p1);
        const int real = c - cb * DC_LANES < DC_LANES ? (int)(c - cb * DC_LANES) : DC_LANES;
        dc_block_to_planes(xb + (b * nb + cb) * hw * DC_LANES, x + (b * c + cb * DC_LANES) * hw, hw, p0, p1, real);
    }
    return 0;
}
