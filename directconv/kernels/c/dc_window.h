/* The pooling loops' window arithmetic (dc_graph.c; the library's source includes it first). */
#ifndef DC_WINDOW_H
#define DC_WINDOW_H

/* Output columns [*in0, *in1) whose window of k taps (stride s, left padding p) lies wholly inside [0, w): the ones
 * a pool may run without clipping its window. An empty range when none does. */
static inline void dc_inner_columns(long w, long wo, int k, int s, int p, long *in0, long *in1)
{
    const long lo = (p + s - 1) / s, hi = w - k + p >= 0 ? (w - k + p) / s + 1 : 0;
    *in0 = lo < wo ? lo : wo;
    *in1 = hi < *in0 ? *in0 : hi < wo ? hi : wo;
}

#endif
