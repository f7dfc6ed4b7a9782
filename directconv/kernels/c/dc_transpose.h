/* 4x4 transposes of 16-byte vectors between NCHW planes and blocked (NCHWc) pixels, shared by the layout
 * conversions (dc_layout.c) and the NCHW entry of the lane-wise kernels (kernels/codegen_lanes.py). SSE2 and NEON
 * have 16-byte vectors without ISA flags, so both sides move whole vectors wherever the code is built.
 * DC_LANES (channels per block) is defined before this text. */
typedef float dc_t4 __attribute__((vector_size(16), aligned(4)));

/* Lanes q..q+3 of pixels p..p+3 of blocked s -> pixels p..p+3 of planes q..q+3 of d (plane stride hw). */
static inline void dc_transpose4_out(const float *restrict s, float *restrict d, long hw, long p, int q)
{
    const dc_t4 a = *(const dc_t4 *)(s + (p + 0) * DC_LANES + q), b = *(const dc_t4 *)(s + (p + 1) * DC_LANES + q);
    const dc_t4 c = *(const dc_t4 *)(s + (p + 2) * DC_LANES + q), e = *(const dc_t4 *)(s + (p + 3) * DC_LANES + q);
    const dc_t4 t0 = __builtin_shufflevector(a, b, 0, 4, 1, 5), t1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
    const dc_t4 t2 = __builtin_shufflevector(c, e, 0, 4, 1, 5), t3 = __builtin_shufflevector(c, e, 2, 6, 3, 7);
    *(dc_t4 *)(d + (q + 0) * hw + p) = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    *(dc_t4 *)(d + (q + 1) * hw + p) = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    *(dc_t4 *)(d + (q + 2) * hw + p) = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    *(dc_t4 *)(d + (q + 3) * hw + p) = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}

/* The float-by-float rest of dc_block_to_planes. Not vectorized: with AVX-512 flags GCC turns it into scatters,
 * slower than the scalar loop (docs/design.md, "NCHW <-> blocked conversions in C"). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
static void dc_block_to_planes_rest(const float *restrict s, float *restrict d, long hw, long p0, long p1, int real)
{
    for (long p = p0; p < p1; ++p)
        for (int l = 0; l < real; ++l) d[l * hw + p] = s[p * DC_LANES + l];
}

/* Blocked pixels [p0, p1) of one channel block s -> its `real` planes of d; 4x4 transposes for a full block. */
static void dc_block_to_planes(const float *restrict s, float *restrict d, long hw, long p0, long p1, int real)
{
    /* Counted loops, not one index carried from the first into the second: GCC then sees both trip counts. */
    const long quads = DC_LANES % 4 == 0 && real == DC_LANES ? (p1 - p0) / 4 : 0;
    for (long k = 0; k < quads; ++k) /* constant lane count: the lane loop unrolls */
        for (int q = 0; q < DC_LANES; q += 4) dc_transpose4_out(s, d, hw, p0 + 4 * k, q);
    dc_block_to_planes_rest(s, d, hw, p0 + 4 * quads, p1, real);
}

/* A block of fewer than DC_LANES channels, float by float, lanes past `real` zero; not vectorized, as above. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
static void dc_planes_to_part_block(const float *restrict s, float *restrict d, long hw, long p0, long p1, int real)
{
    for (long p = p0; p < p1; ++p) {
        int l = 0;
        for (; l < real; ++l) d[p * DC_LANES + l] = s[l * hw + p];
        for (; l < DC_LANES; ++l) d[p * DC_LANES + l] = 0.0f;
    }
}

/* Pixels [p0, p1) of the `real` planes of s (plane stride hw) -> one blocked channel block d, lanes past `real`
 * zero. A full block's constant trip count becomes one vector store per pixel. */
static void dc_planes_to_block(const float *restrict s, float *restrict d, long hw, long p0, long p1, int real)
{
    if (real == DC_LANES) {
        for (long p = p0; p < p1; ++p)
            for (int l = 0; l < DC_LANES; ++l) d[p * DC_LANES + l] = s[l * hw + p];
    } else {
        dc_planes_to_part_block(s, d, hw, p0, p1, real);
    }
}
