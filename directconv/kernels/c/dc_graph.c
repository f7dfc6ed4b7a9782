/* The non-convolution operators of a graph on blocked activations, multi-threaded: pooling, channel shuffle and
 * copy, activations, sums and per-channel affine maps.
 *
 * graph/ops.py defines each operator in numpy with onnxruntime's semantics; numpy makes a pass per kernel tap or
 * per arithmetic step on one thread, which made these operators a fifth to two fifths of a network's time. Here
 * each output element is computed in one pass, in the order and with the roundings of the numpy passes, so the
 * results are the same bit for bit, except global average pooling (float64 sums in another order) and sigmoid and
 * SiLU (a polynomial exp, dc_epilogue.h), both within 1e-6 relative. kernels/graph_ops.py checks every array
 * before calling.
 *
 * Before this text (kernels/graph_ops.py): DC_LANES (channels per block); DC_CHUNK (lanes per vector: a whole
 * block where the host has an ISA of that width, whose flags the library is then built with; else 4 when DC_LANES
 * is a multiple of 4, else 1); kernels/codegen.vector_prelude for DC_CHUNK lanes (vf, vi, VLOAD, VSTORE);
 * dc_epilogue.h (the DC_ACT_* codes, VSEL, dc_exp). Built with -ffp-contract=off, so that x * a + b rounds twice as
 * numpy's two passes do.
 *
 * Layouts. A tensor is n images `xs` floats apart (a slice of channel blocks of a larger buffer has a batch stride
 * above its own image size); an image is nb contiguous channel blocks [nb][h][w][DC_LANES]; channel c is lane
 * c % DC_LANES of block c / DC_LANES. Per-channel vectors (scale, shift) are nb * DC_LANES floats.
 * Every function returns 0, or -1 before touching memory when an argument is out of range. Each output element is
 * written by one task in a fixed order, so results do not depend on `threads`. The outputs of pools, the shuffle and
 * the channel copy must not overlap their input; an elementwise output may be an input itself, element for element,
 * but must not overlap it otherwise.
 */
#include <float.h>
#include <math.h>
#include <string.h>

_Static_assert(sizeof(vf) == DC_CHUNK * sizeof(float), "vf holds DC_CHUNK lanes");
_Static_assert(DC_LANES % DC_CHUNK == 0, "a block is whole vectors");

#define DC_VECS (DC_LANES / DC_CHUNK) /* vectors per pixel */
#define DC_RUN 2048                   /* pixels per task of the per-block operators: 8 KiB of one channel plane */
#define DC_SPAN 16384                 /* floats per task of the elementwise operators: 64 KiB */
#define DC_TILE 1024                  /* floats a fused activation runs over while they are in L1: 4 KiB */
#define DC_MIN_WORK 32768             /* below this many floats read, a second thread costs more than it saves */

typedef double vd __attribute__((vector_size(8 * DC_CHUNK)));
#if DC_CHUNK >= 8
typedef float vhf __attribute__((vector_size(2 * DC_CHUNK)));                /* half a vector */
typedef float vhfu __attribute__((vector_size(2 * DC_CHUNK), aligned(4)));   /* unaligned */
typedef double vhd __attribute__((vector_size(4 * DC_CHUNK)));               /* its doubles */
#endif

static inline long dc_min(long a, long b) { return a < b ? a : b; }

/* Task t of (image, block, run of DC_RUN pixels) over n images of nb blocks of hw pixels. */
static inline void dc_task(long t, long nb, long runs, long hw, long *b, long *cb, long *p0, long *p1)
{
    *b = t / (nb * runs);
    *cb = (t / runs) % nb;
    *p0 = (t % runs) * DC_RUN;
    *p1 = dc_min(*p0 + DC_RUN, hw);
}

/* np.clip(v, 0, 1): v itself on a tie (-0 stays -0), NaN passes through. */
static inline vf dc_clip01(vf v)
{
    const vf zero = {0}, one = zero + 1.0f;
    v = VSEL(v < zero, zero, v);
    return VSEL(v > one, one, v);
}

/* 1 + exp(-x), +inf where dc_exp would saturate (x below -88.38): as numpy's overflow, which the division
 * turns into the exact limit 0 (sigmoid) or -0 (SiLU) instead of dividing by a clamped exp. NaN stays NaN (dc_exp's
 * clamp would make it finite). */
static inline vf dc_logistic_denominator(vf x)
{
    const vf zero = {0};
    const vf d = VSEL(x < zero - 88.3762626647949f, zero + INFINITY, dc_exp(-x) + 1.0f);
    return VSEL(x != x, x, d);
}

/* act(x) as graph/ops.py's numpy passes compute it: np.maximum and np.minimum give the second operand on a tie and
 * propagate NaN; np.clip keeps x on a tie; hard_sigmoid and hard_swish round after each step. */
static inline vf dc_act_numpy(vf x, int act, float alpha, float beta)
{
    const vf zero = {0}, a = zero + alpha, b = zero + beta;
    switch (act) {
    case DC_ACT_RELU: return VSEL((x > zero) | (x != x), x, zero);
    case DC_ACT_CLIP: {
        const vf lo = VSEL((x > a) | (x != x), x, a);
        return VSEL((lo < b) | (lo != lo), lo, b);
    }
    case DC_ACT_LEAKY_RELU: return VSEL(x < zero, x * a, x);
    case DC_ACT_SIGMOID: return 1.0f / dc_logistic_denominator(x);
    case DC_ACT_HARD_SIGMOID: return dc_clip01(x * a + b);
    case DC_ACT_HARD_SWISH: return x * dc_clip01(x * (float)(1.0 / 6.0) + 0.5f);
    case DC_ACT_SILU: return x / dc_logistic_denominator(x);
    default: return x;
    }
}

/* First and end tap (0 <= first, end <= k) of a kernel of k taps d apart starting at input index `start` whose
 * input index lies in [0, size); first >= end when none does. */
static inline void dc_taps(long start, long size, int k, int d, int *first, int *end)
{
    const long lo = start >= 0 ? 0 : (-start + d - 1) / d;
    const long hi = start > size - 1 ? 0 : (size - 1 - start) / d + 1;
    *first = (int)dc_min(lo, k);
    *end = (int)dc_min(hi, k);
}

/* The max-pool's fold of tap a into m as numpy's maximum folded over the taps: a when a >= m or a is NaN (a later
 * tap wins a tie), else m (a NaN m stays: neither holds). */
static inline vf dc_fold_max(vf m, vf a)
{
    return VSEL((a >= m) | (a != a), a, m);
}

/* x86's max: m where m > a, else a (so a on a tie, and whenever either is NaN), one instruction where the library's
 * ISA has it, the same select elsewhere. */
#if defined(__AVX512F__) && DC_CHUNK == 16
#include <immintrin.h>
#define DC_MAXPS(m, a) ((vf)_mm512_max_ps((__m512)(m), (__m512)(a)))
#elif defined(__AVX__) && DC_CHUNK == 8
#include <immintrin.h>
#define DC_MAXPS(m, a) ((vf)_mm256_max_ps((__m256)(m), (__m256)(a)))
#elif defined(__SSE__) && DC_CHUNK == 4
#include <immintrin.h>
#define DC_MAXPS(m, a) ((vf)_mm_max_ps((__m128)(m), (__m128)(a)))
#else
#define DC_MAXPS(m, a) VSEL((m) > (a), (m), (a))
#endif

static inline int dc_any_nan(vf v)
{
    const vi nan = (vi)(v != v);
    int any = 0;
    for (int l = 0; l < DC_CHUNK; ++l) any |= nan[l];
    return any != 0;
}

/* The maximum of a 3x3 window of whole pixels (`row` floats between its rows) into y, folded over the taps in
 * row-major order as dc_graph_max_pool does (a tie takes the later tap, NaN propagates). Without a NaN that fold is
 * x86's max tap after tap (a later tap wins a tie there too), one instruction a tap; the sum of the taps, one more,
 * shows a NaN (or an inf - inf), and only then is the window folded again with the NaN-propagating select. */
static inline void dc_max3x3(const float *restrict xc, long row, float *restrict y)
{
    for (int q = 0; q < DC_VECS; ++q) {
        vf m = VLOAD(xc + q * DC_CHUNK), sum = m;
        for (int i = 0; i < 3; ++i)
            for (int j = i == 0; j < 3; ++j) {
                const vf a = VLOAD(xc + i * row + j * DC_LANES + q * DC_CHUNK);
                m = DC_MAXPS(m, a);
                sum += a;
            }
        if (dc_any_nan(sum)) {
            m = VLOAD(xc + q * DC_CHUNK);
            for (int i = 0; i < 3; ++i)
                for (int j = i == 0; j < 3; ++j) {
                    m = dc_fold_max(m, VLOAD(xc + i * row + j * DC_LANES + q * DC_CHUNK));
                }
        }
        VSTORE(y + q * DC_CHUNK, m);
    }
}

/* y = ONNX MaxPool of x: y[b][cb][ho][wo][DC_LANES] over x[b][cb][h][w][DC_LANES], windows of kh x kw taps
 * (dh, dw) apart, strides (sh, sw), top and left padding (pt, pl) acting as -inf (the bottom and right padding
 * follow from ho and wo). NaN propagates and a tie takes the later tap, as numpy's maximum folded over the taps; a
 * window holding no input element gives -FLT_MAX. One task per output row of one (image, block). */
int dc_graph_max_pool(const float *restrict x, float *restrict y, long n, long nb, long xs, long ys, long h, long w,
                      long ho, long wo, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int threads)
{
    if (n < 1 || nb < 1 || xs < 0 || ys < 0 || h < 1 || w < 1 || ho < 1 || wo < 1 || kh < 1 || kw < 1 || sh < 1
        || sw < 1 || pt < 0 || pl < 0 || dh < 1 || dw < 1 || threads < 1)
        return -1;
    const long tasks = n * nb * ho;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && tasks * wo * DC_LANES * kh * kw >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        const long oh = t % ho, cb = t / ho % nb, b = t / ho / nb, r0 = oh * sh - pt;
        const float *restrict xp = x + b * xs + cb * h * w * DC_LANES;
        float *restrict yr = y + b * ys + (cb * ho + oh) * wo * DC_LANES;
        int i0, i1;
        dc_taps(r0, h, kh, dh, &i0, &i1);
        /* The columns whose 3x3 window lies inside a row that is inside: the common max-pool, taps unrolled. */
        long in0 = wo, in1 = wo;
        if (kh == 3 && kw == 3 && dh == 1 && dw == 1 && i0 == 0 && i1 == 3)
            dc_inner_columns(w, wo, 3, sw, pl, &in0, &in1);
        for (long ow = in0; ow < in1; ++ow)
            dc_max3x3(xp + (r0 * w + ow * sw - pl) * DC_LANES, w * DC_LANES, yr + ow * DC_LANES);
        for (long ow = 0; ow < wo; ++ow) {
            if (ow == in0) ow = in1;
            if (ow >= wo) break;
            const long c0 = ow * sw - pl;
            int j0, j1;
            dc_taps(c0, w, kw, dw, &j0, &j1);
            const vf zero = {0}, start = zero + (i0 < i1 && j0 < j1 ? -INFINITY : -FLT_MAX);
            vf m[DC_VECS];
            for (int q = 0; q < DC_VECS; ++q) m[q] = start;
            for (int i = i0; i < i1; ++i)
                for (int j = j0; j < j1; ++j) {
                    const float *restrict xc = xp + ((r0 + (long)i * dh) * w + c0 + (long)j * dw) * DC_LANES;
                    for (int q = 0; q < DC_VECS; ++q) m[q] = dc_fold_max(m[q], VLOAD(xc + q * DC_CHUNK));
                }
            for (int q = 0; q < DC_VECS; ++q) VSTORE(yr + ow * DC_LANES + q * DC_CHUNK, m[q]);
        }
    }
    return 0;
}

/* y = ONNX AveragePool of x, laid out as in dc_graph_max_pool, pads (pt, pl, pb, pr). A window's float sum runs over
 * its input taps row by row from 0, and is divided by the count of its elements inside the input, or with
 * include_pad inside the padded input (a ceil-mode window running past the end padding is clipped to it): the
 * numpy fold's order and divisor, so the result is the same bit for bit. */
int dc_graph_average_pool(const float *restrict x, float *restrict y, long n, long nb, long xs, long ys, long h,
                          long w, long ho, long wo, int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr,
                          int include_pad, int threads)
{
    if (n < 1 || nb < 1 || xs < 0 || ys < 0 || h < 1 || w < 1 || ho < 1 || wo < 1 || kh < 1 || kw < 1 || sh < 1
        || sw < 1 || pt < 0 || pl < 0 || pb < 0 || pr < 0 || threads < 1)
        return -1;
    const long tasks = n * nb * ho;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && tasks * wo * DC_LANES * kh * kw >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        const long oh = t % ho, cb = t / ho % nb, b = t / ho / nb, r0 = oh * sh - pt;
        const float *restrict xp = x + b * xs + cb * h * w * DC_LANES;
        float *restrict yr = y + b * ys + (cb * ho + oh) * wo * DC_LANES;
        int i0, i1;
        dc_taps(r0, h, kh, 1, &i0, &i1);
        const long rows = include_pad ? dc_min(r0 + kh, h + pb) - r0 : i1 - i0;
        for (long ow = 0; ow < wo; ++ow) {
            const long c0 = ow * sw - pl;
            int j0, j1;
            dc_taps(c0, w, kw, 1, &j0, &j1);
            const long cols = include_pad ? dc_min(c0 + kw, w + pr) - c0 : j1 - j0;
            vf s[DC_VECS] = {{0}};
            for (int i = i0; i < i1; ++i)
                for (int j = j0; j < j1; ++j) {
                    const float *restrict xc = xp + ((r0 + i) * w + c0 + j) * DC_LANES;
                    for (int q = 0; q < DC_VECS; ++q) s[q] += VLOAD(xc + q * DC_CHUNK);
                }
            const float count = (float)(rows * cols);
            for (int q = 0; q < DC_VECS; ++q) VSTORE(yr + ow * DC_LANES + q * DC_CHUNK, s[q] / count);
        }
    }
    return 0;
}

/* y[b][cb][DC_LANES] = the mean of x[b][cb][hw][DC_LANES] over its hw pixels, summed in double. One task per
 * (image, block). */
int dc_graph_global_average_pool(const float *restrict x, float *restrict y, long n, long nb, long hw, long xs,
                                 long ys, int threads)
{
    if (n < 1 || nb < 1 || hw < 1 || xs < 0 || ys < 0 || threads < 1) return -1;
    const long tasks = n * nb;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && tasks * hw * DC_LANES >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        const long cb = t % nb, b = t / nb;
        const float *restrict xp = x + b * xs + cb * hw * DC_LANES;
#if DC_CHUNK >= 8
        /* Half vectors: their doubles fill one native register; a whole vector's doubles are twice the ISA's width,
         * and GCC lowers such vectors through memory. */
        vhd s[2 * DC_VECS] = {{0}};
        for (long p = 0; p < hw; ++p)
            for (int q = 0; q < 2 * DC_VECS; ++q)
                s[q] += __builtin_convertvector(*(const vhfu *)(xp + p * DC_LANES + q * (DC_CHUNK / 2)), vhd);
        for (int q = 0; q < 2 * DC_VECS; ++q)
            *(vhfu *)(y + b * ys + cb * DC_LANES + q * (DC_CHUNK / 2)) = __builtin_convertvector(s[q] / (double)hw, vhf);
#else
        vd s[DC_VECS] = {{0}};
        for (long p = 0; p < hw; ++p)
            for (int q = 0; q < DC_VECS; ++q)
                s[q] += __builtin_convertvector(VLOAD(xp + p * DC_LANES + q * DC_CHUNK), vd);
        for (int q = 0; q < DC_VECS; ++q)
            VSTORE(y + b * ys + cb * DC_LANES + q * DC_CHUNK, __builtin_convertvector(s[q] / (double)hw, vf));
#endif
    }
    return 0;
}

/* Pixels [p0, p1) of lanes [lo, hi) of one output block yb: lane l of pixel p = xi[src[l] + p * DC_LANES]. A full
 * block's constant trip count lets the lane loop unroll. Not vectorized: with AVX-512 flags GCC makes it gathers,
 * slower than the scalar loop (docs/design.md, "Where a graph's time went"). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
static void dc_gather(const float *restrict xi, float *restrict yb, const long *src, int lo, int hi, long p0,
                             long p1)
{
    if (lo == 0 && hi == DC_LANES) {
        for (long p = p0; p < p1; ++p)
            for (int l = 0; l < DC_LANES; ++l) yb[p * DC_LANES + l] = xi[src[l] + p * DC_LANES];
    } else {
        for (long p = p0; p < p1; ++p)
            for (int l = lo; l < hi; ++l) yb[p * DC_LANES + l] = xi[src[l] + p * DC_LANES];
    }
}

/* Where channel s of an image of hw-pixel blocks starts: its block's offset plus its lane. */
static inline long dc_channel_offset(long s, long hw)
{
    return s / DC_LANES * hw * DC_LANES + s % DC_LANES;
}

#if DC_LANES == 16
/* A whole output block of a 4-group shuffle: lane 4j + q is channel j of quarter q's run of four (src[4j + q]).
 * Each quarter's four channels are one 16-byte load where they lie in one block (else four loads), and a 4x4
 * transpose interleaves the quarters: 4 loads, 8 shuffles and 4 stores a pixel instead of 16 loads and 16 stores.
 * Data movement only, so the bits are the per-lane gather's. */
typedef float dc_q4 __attribute__((vector_size(16), aligned(4)));

static inline dc_q4 dc_quarter(const float *restrict xi, const long *src, int q, int whole, long p)
{
    const float *at = xi + p * DC_LANES;
    if (whole) return *(const dc_q4 *)(at + src[q]);
    return (dc_q4){at[src[q]], at[src[4 + q]], at[src[8 + q]], at[src[12 + q]]};
}

static void dc_shuffle4(const float *restrict xi, float *restrict yb, const long *src, long p0, long p1)
{
    int whole[4];
    for (int q = 0; q < 4; ++q)
        whole[q] = src[4 + q] == src[q] + 1 && src[8 + q] == src[q] + 2 && src[12 + q] == src[q] + 3;
    for (long p = p0; p < p1; ++p) {
        const dc_q4 a0 = dc_quarter(xi, src, 0, whole[0], p), a1 = dc_quarter(xi, src, 1, whole[1], p);
        const dc_q4 a2 = dc_quarter(xi, src, 2, whole[2], p), a3 = dc_quarter(xi, src, 3, whole[3], p);
        const dc_q4 t0 = __builtin_shufflevector(a0, a1, 0, 4, 1, 5), t1 = __builtin_shufflevector(a0, a1, 2, 6, 3, 7);
        const dc_q4 t2 = __builtin_shufflevector(a2, a3, 0, 4, 1, 5), t3 = __builtin_shufflevector(a2, a3, 2, 6, 3, 7);
        dc_q4 *out = (dc_q4 *)(yb + p * DC_LANES);
        out[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
        out[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
        out[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
        out[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
    }
}
#endif

/* y = ShuffleNet's channel shuffle of x (both n images of nb blocks of hw pixels): output channel k * g + i is input
 * channel i * (c / g) + k; the padded lanes (channels c and up) become zero. One task per (image, output block,
 * run of pixels), each pixel a gather of DC_LANES input channels (whole blocks of 16 lanes with 4 groups: a
 * transpose of the groups' runs, dc_shuffle4). */
int dc_graph_channel_shuffle(const float *restrict x, float *restrict y, long n, long nb, long hw, long xs, long ys,
                             long c, long g, int threads)
{
    if (n < 1 || nb < 1 || hw < 1 || xs < 0 || ys < 0 || c <= (nb - 1) * DC_LANES || c > nb * DC_LANES || g < 1
        || c % g || threads < 1)
        return -1;
    const long runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * nb * runs;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * nb * hw * DC_LANES >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        long b, ob, p0, p1, src[DC_LANES];
        dc_task(t, nb, runs, hw, &b, &ob, &p0, &p1);
        const int real = (int)dc_min(DC_LANES, c - ob * DC_LANES);
        for (int l = 0; l < real; ++l) {
            const long k = ob * DC_LANES + l;
            src[l] = dc_channel_offset(k % g * (c / g) + k / g, hw);
        }
        float *restrict yb = y + b * ys + ob * hw * DC_LANES;
#if DC_LANES == 16
        if (g == 4 && real == DC_LANES) {
            dc_shuffle4(x + b * xs, yb, src, p0, p1);
            continue;
        }
#endif
        dc_gather(x + b * xs, yb, src, 0, real, p0, p1);
        for (long p = p0; p < p1 && real < DC_LANES; ++p)
            for (int l = real; l < DC_LANES; ++l) yb[p * DC_LANES + l] = 0.0f;
    }
    return 0;
}

/* Channels [offset, offset + c) of y (n images of yb blocks) = channels [0, c) of x (n images of xb blocks), both of
 * hw pixels: one input of a Concat. Nothing else of y is written, x's padded lanes are not read. One task per
 * (image, output block touched, run of pixels); a block-aligned copy moves whole blocks. */
int dc_graph_copy_channels(const float *restrict x, float *restrict y, long n, long xb, long yb, long hw, long xs,
                           long ys, long offset, long c, int threads)
{
    if (n < 1 || xb < 1 || yb < 1 || hw < 1 || xs < 0 || ys < 0 || offset < 0 || c < 1 || c > xb * DC_LANES
        || offset + c > yb * DC_LANES || threads < 1)
        return -1;
    const long first = offset / DC_LANES, blocks = (offset + c - 1) / DC_LANES - first + 1;
    const long runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * blocks * runs;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * c * hw >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        long b, k, p0, p1, src[DC_LANES];
        dc_task(t, blocks, runs, hw, &b, &k, &p0, &p1);
        const long ob = first + k;
        const int lo = (int)(offset > ob * DC_LANES ? offset - ob * DC_LANES : 0);
        const int hi = (int)dc_min(DC_LANES, offset + c - ob * DC_LANES);
        for (int l = lo; l < hi; ++l) src[l] = dc_channel_offset(ob * DC_LANES + l - offset, hw);
        const float *restrict xi = x + b * xs;
        float *restrict yo = y + b * ys + ob * hw * DC_LANES;
        if (offset % DC_LANES == 0 && hi - lo == DC_LANES)
            memcpy(yo + p0 * DC_LANES, xi + src[0] + p0 * DC_LANES, (size_t)(p1 - p0) * DC_LANES * sizeof(float));
        else
            dc_gather(xi, yo, src, lo, hi, p0, p1);
    }
    return 0;
}

/* The elementwise operators run tasks of (image, span of DC_SPAN floats) over count floats per image. */
static inline int dc_elementwise_ok(long count, int act, int threads)
{
    return count >= 1 && count % DC_CHUNK == 0 && act >= 0 && act < DC_ACT_COUNT && threads >= 1;
}

/* y[0, count) = act(x[0, count)), count a multiple of DC_CHUNK (x may be y). One loop per activation with the
 * switch outside: GCC does not hoist it out of one loop (a jump per vector). */
static void dc_act_run(const float *x, float *y, long count, int act, float alpha, float beta)
{
#define DC_ACT_LOOP(A) \
    for (long i = 0; i < count; i += DC_CHUNK) VSTORE(y + i, dc_act_numpy(VLOAD(x + i), A, alpha, beta))
    switch (act) {
    case DC_ACT_RELU: DC_ACT_LOOP(DC_ACT_RELU); break;
    case DC_ACT_CLIP: DC_ACT_LOOP(DC_ACT_CLIP); break;
    case DC_ACT_LEAKY_RELU: DC_ACT_LOOP(DC_ACT_LEAKY_RELU); break;
    case DC_ACT_SIGMOID: DC_ACT_LOOP(DC_ACT_SIGMOID); break;
    case DC_ACT_HARD_SIGMOID: DC_ACT_LOOP(DC_ACT_HARD_SIGMOID); break;
    case DC_ACT_HARD_SWISH: DC_ACT_LOOP(DC_ACT_HARD_SWISH); break;
    case DC_ACT_SILU: DC_ACT_LOOP(DC_ACT_SILU); break;
    default: if (x != y) memcpy(y, x, (size_t)count * sizeof(float));
    }
#undef DC_ACT_LOOP
}

/* y = act(x) elementwise over n images of count floats (x may be y). */
int dc_graph_activation(const float *x, float *y, long n, long count, long xs, long ys, int act, float alpha,
                        float beta, int threads)
{
    if (n < 1 || xs < 0 || ys < 0 || !dc_elementwise_ok(count, act, threads)) return -1;
    const long spans = (count + DC_SPAN - 1) / DC_SPAN, tasks = n * spans;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * count >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        const long b = t / spans, i0 = t % spans * DC_SPAN, i1 = dc_min(i0 + DC_SPAN, count);
        dc_act_run(x + b * xs + i0, y + b * ys + i0, i1 - i0, act, alpha, beta);
    }
    return 0;
}

/* y = act(a + b) elementwise over n images of count floats (y may be a or b). The activation runs over each tile of
 * DC_TILE sums while it is in the L1 cache. */
int dc_graph_add(const float *a, const float *b, float *y, long n, long count, long as, long bs, long ys, int act,
                 float alpha, float beta, int threads)
{
    if (n < 1 || as < 0 || bs < 0 || ys < 0 || !dc_elementwise_ok(count, act, threads)) return -1;
    const long spans = (count + DC_SPAN - 1) / DC_SPAN, tasks = n * spans;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * count >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        const long k = t / spans, i1 = dc_min(t % spans * DC_SPAN + DC_SPAN, count);
        const float *ai = a + k * as, *bi = b + k * bs;
        float *yi = y + k * ys;
        for (long i0 = t % spans * DC_SPAN; i0 < i1; i0 += DC_TILE) {
            const long i2 = dc_min(i0 + DC_TILE, i1);
            for (long i = i0; i < i2; i += DC_CHUNK) VSTORE(yi + i, VLOAD(ai + i) + VLOAD(bi + i));
            if (act != DC_ACT_NONE) dc_act_run(yi + i0, yi + i0, i2 - i0, act, alpha, beta);
        }
    }
    return 0;
}

/* y = act(x * scale + shift) per channel, rounded after the product and after the sum, over n images of nb blocks
 * of hw pixels (x may be y); scale and shift are nb * DC_LANES floats. One task per (image, block, run of pixels);
 * the activation runs over each tile of DC_TILE floats while it is in the L1 cache. */
int dc_graph_scale_shift(const float *x, const float *scale, const float *shift, float *y, long n, long nb, long hw,
                         long xs, long ys, int act, float alpha, float beta, int threads)
{
    if (n < 1 || nb < 1 || hw < 1 || xs < 0 || ys < 0 || act < 0 || act >= DC_ACT_COUNT || threads < 1) return -1;
    const long runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * nb * runs;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * nb * hw * DC_LANES >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        long b, cb, p0, p1;
        dc_task(t, nb, runs, hw, &b, &cb, &p0, &p1);
        const float *xb = x + b * xs + cb * hw * DC_LANES;
        float *yb = y + b * ys + cb * hw * DC_LANES;
        vf s[DC_VECS], u[DC_VECS];
        for (int q = 0; q < DC_VECS; ++q) {
            s[q] = VLOAD(scale + cb * DC_LANES + q * DC_CHUNK);
            u[q] = VLOAD(shift + cb * DC_LANES + q * DC_CHUNK);
        }
        for (; p0 < p1; p0 += DC_TILE / DC_LANES) {
            const long p2 = dc_min(p0 + DC_TILE / DC_LANES, p1);
            for (long p = p0; p < p2; ++p)
                for (int q = 0; q < DC_VECS; ++q) {
                    const long i = p * DC_LANES + q * DC_CHUNK;
                    VSTORE(yb + i, VLOAD(xb + i) * s[q] + u[q]);
                }
            if (act != DC_ACT_NONE)
                dc_act_run(yb + p0 * DC_LANES, yb + p0 * DC_LANES, (p2 - p0) * DC_LANES, act, alpha, beta);
        }
    }
    return 0;
}

/* y = x * scale per (image, channel) over n images of nb blocks of hw pixels (x may be y): image b's scale is the
 * nb * DC_LANES floats at scale + b * ss (ss = 0: one scale for every image). */
int dc_graph_scale_channels(const float *x, const float *scale, float *y, long n, long nb, long hw, long xs, long ys,
                            long ss, int threads)
{
    if (n < 1 || nb < 1 || hw < 1 || xs < 0 || ys < 0 || ss < 0 || threads < 1) return -1;
    const long runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * nb * runs;
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * nb * hw * DC_LANES >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        long b, cb, p0, p1;
        dc_task(t, nb, runs, hw, &b, &cb, &p0, &p1);
        const float *xb = x + b * xs + cb * hw * DC_LANES;
        float *yb = y + b * ys + cb * hw * DC_LANES;
        vf s[DC_VECS];
        for (int q = 0; q < DC_VECS; ++q) s[q] = VLOAD(scale + b * ss + cb * DC_LANES + q * DC_CHUNK);
        for (long p = p0; p < p1; ++p)
            for (int q = 0; q < DC_VECS; ++q) {
                const long i = p * DC_LANES + q * DC_CHUNK;
                VSTORE(yb + i, VLOAD(xb + i) * s[q]);
            }
    }
    return 0;
}

/* ONNX LRN across channels: y = x * (bias + scale * sq)^-beta (scale = alpha / size, rounded to float by the caller
 * as numpy does), sq the sum of the squares of the real
 * channels [c - (size - 1) / 2, c + size / 2] (c real channels; y's padded lanes get x's). One task per (image, run
 * of DC_RUN pixels); per pixel the squares of its channels go into a zero-bordered row on the stack and are summed
 * in graph/ops.py's order (the square itself, then the shifts from the lowest up), so sq is numpy's bit for bit.
 * The power: 1 / (sqrt(t) * sqrt(sqrt(t))) for beta = 0.75 (AlexNet, GoogLeNet, ZFNet), powf otherwise. */
#define DC_LRN_CHANNELS 4096 /* more channels (with the padded lanes) than this: graph/ops.py's numpy version */

int dc_graph_lrn(const float *x, float *y, long n, long nb, long hw, long xs, long ys, long c, int size, float scale,
                 float beta, float bias, int threads)
{
    const long lo = (size - 1) / 2, hi = size / 2, border = lo > hi ? lo : hi;
    if (n < 1 || nb < 1 || hw < 1 || xs < 0 || ys < 0 || c < 1 || c > nb * DC_LANES || nb * DC_LANES > DC_LRN_CHANNELS
        || size < 1 || border > 32 || threads < 1)
        return -1;
    const long runs = (hw + DC_RUN - 1) / DC_RUN, tasks = n * runs;
    const int three_quarters = beta == 0.75f;
    const long width = nb * DC_LANES; /* channels with the padded lanes, whose squares are set to 0 */
    #pragma omp parallel for schedule(static) num_threads(threads) \
        if(threads > 1 && tasks > 1 && n * nb * hw * DC_LANES >= DC_MIN_WORK)
    for (long t = 0; t < tasks; ++t) {
        const long b = t / runs, p0 = (t % runs) * DC_RUN, p1 = dc_min(p0 + DC_RUN, hw);
        /* squares with `border` zeros on each side, and the window sums: loops over whole rows of channels, which
         * the compiler vectorizes */
        float sq[DC_LRN_CHANNELS + DC_LANES + 64], sum[DC_LRN_CHANNELS + DC_LANES];
        for (long i = 0; i < border; ++i) sq[i] = sq[border + width + i] = 0.0f;
        for (long p = p0; p < p1; ++p) {
            const float *xp = x + b * xs + p * DC_LANES;
            float *yp = y + b * ys + p * DC_LANES;
            for (long cb = 0; cb < nb; ++cb)
                for (int l = 0; l < DC_LANES; ++l) {
                    const float v = xp[cb * hw * DC_LANES + l];
                    sq[border + cb * DC_LANES + l] = v * v;
                }
            for (long ch = c; ch < width; ++ch) sq[border + ch] = 0.0f;
            for (long ch = 0; ch < width; ++ch) sum[ch] = sq[border + ch];
            for (long k = -lo; k <= hi; ++k)
                if (k != 0)
                    for (long ch = 0; ch < width; ++ch) sum[ch] += sq[border + ch + k];
            for (long ch = 0; ch < width; ++ch) sum[ch] = sum[ch] * scale + bias;
            for (long ch = c; ch < width; ++ch) sum[ch] = 1.0f; /* padded lanes: y = x */
            for (long cb = 0; cb < nb; ++cb) {
                const float *xc = xp + cb * hw * DC_LANES, *base = sum + cb * DC_LANES;
                float *yc = yp + cb * hw * DC_LANES;
                if (three_quarters)
                    for (int l = 0; l < DC_LANES; ++l) yc[l] = xc[l] / (sqrtf(base[l]) * sqrtf(sqrtf(base[l])));
                else
                    for (int l = 0; l < DC_LANES; ++l) yc[l] = xc[l] * powf(base[l], -beta);
            }
        }
    }
    return 0;
}

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

/* y (n x m) = a (n x k) times cols (k x m), plus bias (m) unless it is NULL, all row-major and contiguous, on
 * `threads` threads. Thread t owns a run of the output columns and reads its part of every row of cols, front to back:
 * the matrix is read once (a large one is bound by memory: every byte is used once), and every output is summed in
 * the same order whatever the thread count, so one and two threads give the same bits. Run on the library's OpenMP
 * threads, the kernels' own, so that no second pool competes with them for the cores. Returns 0, or -1 for a refused
 * argument (the Python wrapper checks first). */
int dc_graph_gemv(const float *restrict a, const float *restrict cols, const float *restrict bias, float *restrict y,
                  long n, long k, long m, int threads)
{
    if (n < 1 || k < 1 || m < 1 || threads < 1) return -1;
    #pragma omp parallel num_threads(threads) if(threads > 1)
    {
        const long t = omp_get_thread_num(), nt = omp_get_num_threads();
        /* column runs start on a whole vector of the widest ISA (16 floats) */
        const long c0 = m * t / nt / 16 * 16, c1 = t == nt - 1 ? m : m * (t + 1) / nt / 16 * 16;
        for (long i = 0; i < n; ++i)
            for (long c = c0; c < c1; ++c) y[i * m + c] = 0.0f;
        long j = 0;
        for (; j + 4 <= k; j += 4) { /* four rows per pass over the outputs: a quarter of their loads and stores */
            const float *restrict r0 = cols + j * m, *restrict r1 = r0 + m, *restrict r2 = r1 + m, *restrict r3 = r2 + m;
            for (long i = 0; i < n; ++i) {
                const float *ai = a + i * k + j;
                const float a0 = ai[0], a1 = ai[1], a2 = ai[2], a3 = ai[3];
                float *restrict out = y + i * m;
                for (long c = c0; c < c1; ++c) out[c] += (a0 * r0[c] + a1 * r1[c]) + (a2 * r2[c] + a3 * r3[c]);
            }
        }
        for (; j < k; ++j) {
            const float *restrict row = cols + j * m;
            for (long i = 0; i < n; ++i) {
                const float aij = a[i * k + j];
                float *restrict out = y + i * m;
                for (long c = c0; c < c1; ++c) out[c] += aij * row[c];
            }
        }
        if (bias)
            for (long i = 0; i < n; ++i)
                for (long c = c0; c < c1; ++c) y[i * m + c] += bias[c];
    }
    return 0;
}

/* y (n images of c channels of hw pixels, NCHW, contiguous) = the real channels of x (n images of nb blocks of hw
 * pixels, xs floats apart): where a graph's blocked part hands over to its dense tail (a pooled vector, a small map). */
int dc_graph_to_dense(const float *restrict x, float *restrict y, long n, long nb, long hw, long xs, long c,
                      int threads)
{
    if (n < 1 || nb < 1 || hw < 1 || xs < 0 || c <= (nb - 1) * DC_LANES || c > nb * DC_LANES || threads < 1) return -1;
    #pragma omp parallel for schedule(static) num_threads(threads) if(threads > 1 && n * c * hw >= DC_MIN_WORK)
    for (long t = 0; t < n * c; ++t) {
        const long b = t / c, k = t % c;
        const float *restrict xp = x + b * xs + k / DC_LANES * hw * DC_LANES + k % DC_LANES;
        float *restrict yp = y + t * hw;
        for (long p = 0; p < hw; ++p) yp[p] = xp[p * DC_LANES];
    }
    return 0;
}

/* y = the softmax of each of `rows` rows of `cols` contiguous floats of x: e^(x - the row's max) (dc_exp) over their
 * sum, summed in double. A row whose max is not finite (a NaN, or an infinity) becomes NaN, as numpy's
 * exp(x - max) / sum makes it. */
int dc_graph_softmax(const float *restrict x, float *restrict y, long rows, long cols)
{
    if (rows < 1 || cols < 1) return -1;
    for (long r = 0; r < rows; ++r) {
        const float *restrict xr = x + r * cols;
        float *restrict yr = y + r * cols;
        float top = xr[0];
        int nan = 0;
        for (long i = 0; i < cols; ++i) {
            nan |= xr[i] != xr[i];
            top = xr[i] > top ? xr[i] : top;
        }
        if (nan || top - top != 0.0f) {
            for (long i = 0; i < cols; ++i) yr[i] = __builtin_nanf("");
            continue;
        }
        double sum = 0.0;
        for (long i = 0; i < cols; i += DC_CHUNK) {
            float in[DC_CHUNK] = {0}, out[DC_CHUNK];
            const long m = dc_min(DC_CHUNK, cols - i);
            for (long l = 0; l < m; ++l) in[l] = xr[i + l] - top;
            VSTORE(out, dc_exp(VLOAD(in)));
            for (long l = 0; l < m; ++l) {
                yr[i + l] = out[l];
                sum += out[l];
            }
        }
        for (long i = 0; i < cols; ++i) yr[i] = (float)(yr[i] / sum);
    }
    return 0;
}

/* One step of a graph run, as kernels/graph_ops.chain packs a runtime.BoundCall: the adapter that makes it, the
 * convolution kernel it calls (dc_step_conv only), and the call's arguments sorted by kind in the order the called
 * function takes them: pointers, integers (an int passed as a long), floats. */
typedef struct dc_step dc_step;
struct dc_step {
    int (*run)(const dc_step *);
    void *fn;
    void *p[5];
    long a[18];
    float f[3];
};

/* A generated kernel's dc_conv_fused or dc_conv_fused_x (codegen.C_FUSED_SIGNATURE). */
typedef int (*dc_conv_fn)(const float *, const float *, const float *, float *, const float *, int, int, int, int, int,
                          int, int, int, int, int, int, int, float, float);

/* The adapters: one per function a step may call, each unpacking dc_step in that function's parameter order. */
int dc_step_conv(const dc_step *s)
{
    const long *a = s->a;
    return ((dc_conv_fn)s->fn)(s->p[0], s->p[1], s->p[2], s->p[3], s->p[4], a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                               a[7], a[8], a[9], a[10], a[11], s->f[0], s->f[1]);
}

int dc_step_max_pool(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_max_pool(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
                             a[12], a[13], a[14], a[15], a[16]);
}

int dc_step_average_pool(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_average_pool(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
                                 a[11], a[12], a[13], a[14], a[15], a[16], a[17]);
}

int dc_step_global_average_pool(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_global_average_pool(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5]);
}

int dc_step_channel_shuffle(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_channel_shuffle(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
}

int dc_step_copy_channels(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_copy_channels(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
}

int dc_step_activation(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_activation(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], s->f[0], s->f[1], a[5]);
}

int dc_step_add(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_add(s->p[0], s->p[1], s->p[2], a[0], a[1], a[2], a[3], a[4], a[5], s->f[0], s->f[1], a[6]);
}

int dc_step_scale_shift(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_scale_shift(s->p[0], s->p[1], s->p[2], s->p[3], a[0], a[1], a[2], a[3], a[4], a[5], s->f[0], s->f[1],
                                a[6]);
}

int dc_step_scale_channels(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_scale_channels(s->p[0], s->p[1], s->p[2], a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
}

int dc_step_lrn(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_lrn(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6], s->f[0], s->f[1], s->f[2], a[7]);
}

int dc_step_to_dense(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_to_dense(s->p[0], s->p[1], a[0], a[1], a[2], a[3], a[4], a[5]);
}

int dc_step_softmax(const dc_step *s)
{
    return dc_graph_softmax(s->p[0], s->p[1], s->a[0], s->a[1]);
}

int dc_step_gemv(const dc_step *s)
{
    const long *a = s->a;
    return dc_graph_gemv(s->p[0], s->p[1], s->p[2], s->p[3], a[0], a[1], a[2], a[3]);
}

/* A run of a graph's steps, one after the other, in one call from Python: each call from Python costs time of its
 * own, more once a network's weights have pushed the interpreter out of the caches (measured: docs/design.md,
 * "Where a graph's time went"). Returns 0, or i + 1 for the first step i that refused its arguments (the steps after
 * it are not made). */
int dc_graph_run(const dc_step *steps, int n)
{
    for (int i = 0; i < n; ++i)
        if (steps[i].run(steps + i)) return i + 1;
    return 0;
}
