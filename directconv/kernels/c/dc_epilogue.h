/* directconv: what a kernel does to a finished tile before storing it (the "epilogue"), shared by every kernel kind.
 * Needs vf, vi of the kernel's vector width (codegen.vector_prelude) before it.
 *
 * A graph fuses the ops that follow a convolution into its store, so that the output is written once: a residual
 * tensor of the output's layout is added (ResNet's shortcut), then one activation is applied. The activations are
 * ONNX's: Relu, Clip (alpha = min, beta = max), LeakyRelu (alpha), Sigmoid, HardSigmoid (alpha, beta), HardSwish and
 * x * sigmoid(x) (SiLU). */
#ifndef DC_EPILOGUE_H
#define DC_EPILOGUE_H

#include <stddef.h>

enum { DC_ACT_NONE = 0, DC_ACT_RELU, DC_ACT_CLIP, DC_ACT_LEAKY_RELU, DC_ACT_SIGMOID, DC_ACT_HARD_SIGMOID,
       DC_ACT_HARD_SWISH, DC_ACT_SILU, DC_ACT_COUNT };

typedef struct { int act; float alpha, beta; } dc_act;

#define VSEL(m, a, b) ((vf)(((vi)(m) & (vi)(a)) | (~(vi)(m) & (vi)(b))))
#define VMAX(a, b) VSEL((a) > (b), (a), (b))
#define VMIN(a, b) VSEL((a) < (b), (a), (b))

/* e^x, Cephes' single-precision polynomial after a reduction by ln 2 (relative error about 1e-7); the clamp keeps
 * 2^n a normal float, so large |x| saturate instead of overflowing. */
static inline vf dc_exp(vf x)
{
    const vf zero = {0};
    x = VMIN(VMAX(x, zero - 87.3365447504f), zero + 88.3762626647949f);
    const vf t = x * 1.44269504088896341f + 0.5f;
    vf n = __builtin_convertvector(__builtin_convertvector(t, vi), vf);
    n -= VSEL(n > t, zero + 1.0f, zero);  /* truncation rounded negative values up: floor(t) */
    x -= n * 0.693359375f;
    x -= n * -2.12194440e-4f;
    vf y = zero + 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * x * x + x + 1.0f;
    const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return y * (vf)e;
}

static inline vf dc_sigmoid(vf x)
{
    return 1.0f / (dc_exp(-x) + 1.0f);
}

static inline vf dc_clamp01(vf x)
{
    const vf zero = {0};
    return VMIN(VMAX(x, zero), zero + 1.0f);
}

/* The activations without a line of their own in the store (tiles inline ReLU and Clip, the common ones). */
static inline vf dc_activate(vf x, const dc_act *a)
{
    const vf zero = {0};
    switch (a->act) {
    case DC_ACT_RELU: return VMAX(x, zero);
    case DC_ACT_CLIP: return VMIN(VMAX(x, zero + a->alpha), zero + a->beta);
    case DC_ACT_LEAKY_RELU: return VSEL(x > zero, x, x * a->alpha);
    case DC_ACT_SIGMOID: return dc_sigmoid(x);
    case DC_ACT_HARD_SIGMOID: return dc_clamp01(x * a->alpha + a->beta);
    case DC_ACT_HARD_SWISH: return x * dc_clamp01(x * (1.0f / 6.0f) + 0.5f);
    case DC_ACT_SILU: return x * dc_sigmoid(x);
    default: return x;
    }
}

/* The epilogue of one stored tile beyond a ReLU: `columns` output pixels of `vectors` vectors each, `plane` floats
 * between two vectors of a pixel; the residual (NULL: none) is added, then the activation applied. Not inlined: in
 * the tile function this code would change the register allocation of its hot loop. */
static __attribute__((noinline, unused)) void dc_finish(float *out, const float *res, int columns, int vectors,
                                                ptrdiff_t plane, const dc_act *ep)
{
    const int lanes = (int)(sizeof(vf) / sizeof(float));
    for (int v = 0; v < vectors; ++v)
        for (int k = 0; k < columns; ++k) {
            const ptrdiff_t at = plane * v + (ptrdiff_t)k * lanes;
            vf x = VLOAD(out + at);
            if (res) x += VLOAD(res + at);
            VSTORE(out + at, dc_activate(x, ep));
        }
}

#endif
