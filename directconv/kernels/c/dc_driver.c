/* Standalone driver for one generated kernel: reads the operands from files, runs dc_conv once, writes the output;
 * and, when asked, its NCHW entry dc_conv_nchw once on the same weights.
 *
 * It exists so that a kernel built for another machine (cross-compiled, see kernels/cross.py) can be checked under
 * an emulator such as qemu-user, where the Python loader cannot reach it. Link it with the kernel's C:
 *   cc -O3 -fopenmp kernel.c dc_driver.c -o driver
 *
 * Usage: driver IN WT BIAS OUT OUT_FLOATS BATCH CIB_BLOCKS ROWS PARALLEL_ROWS THREADS RELU
 *               [IN_NCHW OUT_NCHW OUT_NCHW_FLOATS SCRATCH_FLOATS]
 *   IN, WT, BIAS  raw float32 in the target's byte order, in the blocked layouts of directconv.h
 *   OUT           written with OUT_FLOATS float32 (the whole blocked output)
 *   the rest      the integer arguments of dc_conv
 *   IN_NCHW ...   the same input in NCHW: dc_conv_nchw (codegen.C_NCHW_SIGNATURE) runs on it with a scratch of
 *                 SCRATCH_FLOATS floats and writes OUT_NCHW_FLOATS float32 to OUT_NCHW; a kernel without that entry
 *                 (a weak symbol here) is a usage error
 * The output buffers start as NaN, so an element the kernel never writes cannot pass for a result.
 * Exit status: 0 done; 2 usage or I/O error (message on stderr); 3 dc_conv or dc_conv_nchw rejected its arguments.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directconv.h"

/* Defined only in the kernels that have an NCHW entry: null in the others. */
int dc_conv_nchw(const float *x, const float *wt, const float *bias, float *y, int batch, int cib_blocks, int threads,
                 int relu, float *scratch) __attribute__((weak));

static float *read_floats(const char *path, long *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dc_driver: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    float *data = NULL;
    long bytes = -1;
    if (fseek(f, 0, SEEK_END) == 0) bytes = ftell(f);
    if (bytes < 0 || bytes % (long)sizeof(float) || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "dc_driver: %s must hold whole float32 values, it has %ld bytes\n", path, bytes);
    } else if (!(data = malloc(bytes ? (size_t)bytes : 1))) {
        fprintf(stderr, "dc_driver: out of memory reading %s (%ld bytes)\n", path, bytes);
    } else if (fread(data, 1, (size_t)bytes, f) != (size_t)bytes) {
        fprintf(stderr, "dc_driver: short read on %s\n", path);
        free(data);
        data = NULL;
    }
    fclose(f);
    *count = bytes / (long)sizeof(float);
    return data;
}

static int parse_int(const char *text, const char *what, long low, long *value)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < low || v > INT_MAX) {
        fprintf(stderr, "dc_driver: %s must be an integer in [%ld, %d], got '%s'\n", what, low, INT_MAX, text);
        return -1;
    }
    *value = v;
    return 0;
}

static int write_floats(const char *path, const float *data, long count)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, sizeof(float), (size_t)count, f) != (size_t)count || fclose(f)) {
        fprintf(stderr, "dc_driver: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static float *nan_floats(long count)
{
    float *data = malloc((size_t)(count ? count : 1) * sizeof(float));
    if (!data) fprintf(stderr, "dc_driver: out of memory for %ld floats\n", count);
    for (long i = 0; data && i < count; ++i) data[i] = NAN;
    return data;
}

/* dc_conv_nchw on IN_NCHW with the blocked call's weights and integer arguments; 0, 2 or 3 as main returns. */
static int run_nchw(char **argv, const long *args, const float *wt, const float *bias)
{
    long sizes[2];
    if (parse_int(argv[14], "OUT_NCHW_FLOATS", 1, &sizes[0]) || parse_int(argv[15], "SCRATCH_FLOATS", 0, &sizes[1]))
        return 2;
    if (!dc_conv_nchw) {
        fprintf(stderr, "dc_driver: this kernel has no NCHW entry (dc_conv_nchw)\n");
        return 2;
    }
    long n_x;
    float *x = read_floats(argv[12], &n_x);
    float *y = nan_floats(sizes[0]);
    float *scratch = nan_floats(sizes[1]);
    if (!x || !y || !scratch) return 2;
    int code = dc_conv_nchw(x, wt, bias, y, (int)args[1], (int)args[2], (int)args[5], (int)args[6], scratch);
    if (code) {
        fprintf(stderr, "dc_driver: dc_conv_nchw rejected its arguments (code %d)\n", code);
        return 3;
    }
    return write_floats(argv[13], y, sizes[0]) ? 2 : 0;
}

int main(int argc, char **argv)
{
    static const char *const names[] = {"OUT_FLOATS", "BATCH", "CIB_BLOCKS", "ROWS", "PARALLEL_ROWS", "THREADS",
                                        "RELU"};
    static const long lows[] = {1, 1, 1, 1, 0, 1, 0};
    if (argc != 12 && argc != 16) {
        fprintf(stderr, "usage: %s IN WT BIAS OUT OUT_FLOATS BATCH CIB_BLOCKS ROWS PARALLEL_ROWS THREADS RELU [IN_NCHW "
                "OUT_NCHW OUT_NCHW_FLOATS SCRATCH_FLOATS] (got %d arguments, expected 11 or 15)\n", argv[0], argc - 1);
        return 2;
    }
    long args[7];
    for (int i = 0; i < 7; ++i)
        if (parse_int(argv[5 + i], names[i], lows[i], &args[i])) return 2;
    long n_in, n_wt, n_bias;
    float *in = read_floats(argv[1], &n_in);
    float *wt = read_floats(argv[2], &n_wt);
    float *bias = read_floats(argv[3], &n_bias);
    float *out = malloc((size_t)args[0] * sizeof(float));
    if (!in || !wt || !bias || !out) {
        if (!out) fprintf(stderr, "dc_driver: out of memory for %ld output floats\n", args[0]);
        return 2;
    }
    for (long i = 0; i < args[0]; ++i) out[i] = NAN;
    int code = dc_conv(in, wt, bias, out, (int)args[1], (int)args[2], (int)args[3], (int)args[4], (int)args[5],
                       (int)args[6]);
    if (code) {
        fprintf(stderr, "dc_driver: dc_conv rejected its arguments (code %d)\n", code);
        return 3;
    }
    if (write_floats(argv[4], out, args[0])) return 2;
    return argc == 16 ? run_nchw(argv, args, wt, bias) : 0;
}
