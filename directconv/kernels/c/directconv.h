/* directconv: the interface of one generated direct-convolution kernel (kernels/codegen.py writes its C).
 *
 * A generated kernel is specialized to one layer geometry (C_i, C_o, H, W, kh, kw, stride, padding) and one register
 * block (isa, C_o,b, W_o,b): everything else is an argument. Its comment header names both.
 *
 * Layouts, all float32, channels past the real count zero, c = the ISA's fp32 lanes per vector (16 avx512, 8 avx2
 * and avx, 4 neon, 1 scalar):
 *   in    [batch][ceil(C_i/c)][H][W][c]
 *   wt    [ceil(ceil(C_o/c)*c / C_o,b)][ceil(C_i/c)][kh][kw][c][C_o,b]
 *   bias  [ceil(ceil(C_o/c)*c / C_o,b) * C_o,b]
 *   out   [batch][ceil(C_o/c)][H_o][W_o][c]
 * Unaligned pointers are fine; `out` must not overlap the inputs.
 *
 * dc_conv: out = conv(in, wt) + bias, then max(0, .) if relu. cib_blocks: input-channel blocks of c per cache block
 * (clamped to ceil(C_i/c)); rows: output rows per task (clamped to H_o; a 1x1 stride-1 unpadded layer runs as one row
 * of H*W pixels); parallel_rows: 1 splits threads over row tasks first, 0 over output-channel blocks first; threads:
 * OpenMP threads. The result does not depend on threads, rows or parallel_rows. Allocates nothing. Returns 0, or a
 * negative code for an argument out of range.
 *
 * dc_conv_fused: dc_conv for graphs (what directconv.load_onnx calls): in, out and residual are channel-block slices
 * of larger tensors (in_blocks, out_blocks, res_blocks blocks per image, the layer's starting at in_first, out_first,
 * res_first); after the last cache block, residual (NULL: none; it must not overlap out) is added and activation
 * act applied (kernels/c/dc_epilogue.h: 0 none, 1 relu, 2 clip(alpha, beta), 3 leaky relu(alpha), 4 sigmoid, 5 hard
 * sigmoid(alpha, beta), 6 hard swish, 7 x * sigmoid(x)). dc_conv is it on whole tensors with act 0 or 1.
 *
 * dc_conv_fused_x: dc_conv_fused reading `in` as NCHW, [batch][in_blocks][H][W] with the layer's C_i channels from
 * channel in_first on (in_blocks and in_first count channels here). Defined only in kernels of layers with one
 * input-channel block and no groups (C_i <= c: a network's first layer), which then need no conversion of their input.
 *
 * dc_bench: times dc_conv (relu off): `warmup` untimed calls, then timed calls until min_seconds have passed and at
 * least min_samples were taken, at most max_samples; per-call seconds go to samples. Returns the number taken, or a
 * negative dc_conv code.
 */
#ifndef DIRECTCONV_H
#define DIRECTCONV_H

#ifdef __cplusplus
extern "C" {
#endif

int dc_conv(const float *in, const float *wt, const float *bias, float *out, int batch, int cib_blocks, int rows,
            int parallel_rows, int threads, int relu);
int dc_conv_fused(const float *in, const float *wt, const float *bias, float *out, const float *residual, int batch,
                  int cib_blocks, int rows, int parallel_rows, int threads, int in_blocks, int in_first,
                  int out_blocks, int out_first, int res_blocks, int res_first, int act, float alpha, float beta);
int dc_conv_fused_x(const float *in, const float *wt, const float *bias, float *out, const float *residual,
                    int batch, int cib_blocks, int rows, int parallel_rows, int threads, int in_blocks, int in_first,
                    int out_blocks, int out_first, int res_blocks, int res_first, int act, float alpha, float beta);
int dc_bench(const float *in, const float *wt, const float *bias, float *out, int batch, int cib_blocks, int rows,
             int parallel_rows, int threads, int warmup, double min_seconds, int min_samples, int max_samples,
             double *samples);

#ifdef __cplusplus
}
#endif

#endif
