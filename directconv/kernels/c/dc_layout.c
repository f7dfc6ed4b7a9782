/* NCHW <-> blocked (NCHWc) conversions and max-pooling, multi-threaded.
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

/* Max-pooling on blocked data, y[planes][ho][wo][DC_LANES] = max over each window of x[planes][h][w][DC_LANES]
 * (a plane is one channel block of one image). Padding acts as -infinity: a window is clipped to the input (the
 * caller checks that every window holds an element). NaN propagates as in numpy's maximum. One task per output row
 * of one plane. A pixel's channels go 4 at a time as 16-byte vectors (GCC vector extensions): SSE2 and NEON, the
 * baselines, have them, so the code needs no ISA flags (kernels/convert.py adds those of the host's ISA of
 * DC_LANES lanes); inner 3x3 windows go a whole pixel at a time (dc_max3x3). */
typedef float dc_v4 __attribute__((vector_size(16), aligned(4)));
typedef int dc_m4 __attribute__((vector_size(16), aligned(4)));
#define DC_CHUNK (DC_LANES % 4 == 0 ? 4 : 1)

/* The maximum of a 3x3 window of whole pixels (`row` floats between its rows) into y, the taps folded in row-major
 * order as dc_max_pool's loop does. A whole pixel per vector: with the host's flags one register. */
typedef float dc_vp __attribute__((vector_size(4 * DC_LANES), aligned(4)));
typedef int dc_mp __attribute__((vector_size(4 * DC_LANES), aligned(4)));
static inline void dc_max3x3(const float *restrict xc, long row, float *restrict y)
{
    dc_vp m = *(const dc_vp *)xc;
    for (int i = 0; i < 3; ++i)
        for (int j = i == 0; j < 3; ++j) {
            const dc_vp a = *(const dc_vp *)(xc + i * row + j * DC_LANES);
            const dc_mp take = (a > m) | (a != a); /* numpy's maximum: the larger, or a NaN */
            m = (dc_vp)(((dc_mp)a & take) | ((dc_mp)m & ~take));
        }
    *(dc_vp *)y = m;
}

int dc_max_pool(const float *restrict x, float *restrict y, long planes, long h, long w, long ho, long wo, int k,
                int s, int p, int threads)
{
    if (planes < 1 || h < 1 || w < 1 || ho < 1 || wo < 1 || k < 1 || s < 1 || p < 0 || threads < 1) return -1;
    const long tasks = planes * ho;
    #pragma omp parallel for schedule(static) num_threads(threads) if(threads > 1 && tasks > 1)
    for (long t = 0; t < tasks; ++t) {
        const long oh = t % ho, plane = t / ho;
        const float *restrict xp = x + plane * h * w * DC_LANES;
        float *restrict yr = y + t * wo * DC_LANES;
        const long r0 = oh * s - p, ra = r0 < 0 ? 0 : r0, rb = r0 + k < h ? r0 + k : h;
        /* The columns whose 3x3 window lies inside a row that is inside: the common max-pool, taps unrolled. */
        long in0 = wo, in1 = wo;
        if (k == 3 && ra == r0 && rb == r0 + 3) dc_inner_columns(w, wo, 3, s, p, &in0, &in1);
        for (long ow = in0; ow < in1; ++ow)
            dc_max3x3(xp + (r0 * w + ow * s - p) * DC_LANES, w * DC_LANES, yr + ow * DC_LANES);
        for (long ow = 0; ow < wo; ++ow) {
            if (ow == in0) ow = in1;
            if (ow >= wo) break;
            const long c0 = ow * s - p, ca = c0 < 0 ? 0 : c0, cb = c0 + k < w ? c0 + k : w;
            for (int l = 0; l < DC_LANES; l += DC_CHUNK) {
                if (DC_CHUNK == 4) {
                    dc_v4 m = *(const dc_v4 *)(xp + (ra * w + ca) * DC_LANES + l);
                    for (long r = ra; r < rb; ++r)
                        for (long c = ca; c < cb; ++c) {
                            const dc_v4 a = *(const dc_v4 *)(xp + (r * w + c) * DC_LANES + l);
                            const dc_m4 take = (a > m) | (a != a); /* numpy's maximum: the larger, or a NaN */
                            m = (dc_v4)(((dc_m4)a & take) | ((dc_m4)m & ~take));
                        }
                    *(dc_v4 *)(yr + ow * DC_LANES + l) = m;
                } else {
                    float m = xp[(ra * w + ca) * DC_LANES + l];
                    for (long r = ra; r < rb; ++r)
                        for (long c = ca; c < cb; ++c) {
                            const float a = xp[(r * w + c) * DC_LANES + l];
                            m = (a > m || a != a) ? a : m;
                        }
                    yr[ow * DC_LANES + l] = m;
                }
            }
        }
    }
    return 0;
}
