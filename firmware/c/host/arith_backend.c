#include "arith_backend.h"

#include <stdio.h>
#include <string.h>

static const uint8_t versions[] = {3, 4, 5};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t *model_buffer(void *ctx, uint32_t size)
{
    arith_backend_t *a = (arith_backend_t *)ctx;
    return size <= a->store_cap ? a->store : NULL;
}

static void set_desc(k210w_desc_t *d, uint8_t dtype, uint32_t n)
{
    memset(d, 0, sizeof *d);
    d->dtype = dtype;
    d->ndim = 1;
    d->dims[0] = n;
}

static int load(void *ctx, const uint8_t *model, uint32_t size, uint32_t version, k210w_io_t *io, char *err,
                size_t err_cap)
{
    arith_backend_t *a = (arith_backend_t *)ctx;
    uint32_t input_len;
    (void)version;
    a->loaded = 0;
    if (size < ARITH_HEADER_LEN || memcmp(model + 8, "ARTH", 4) != 0) {
        snprintf(err, err_cap, "not an arithmetic fake kmodel (no ARTH block at offset 8)");
        return K210W_E_LOAD_FAILED;
    }
    input_len = le32(model + 16);
    if (input_len == 0 || input_len > a->out0_cap) {
        snprintf(err, err_cap, "input_len %lu outside 1..%lu", (unsigned long)input_len, (unsigned long)a->out0_cap);
        return K210W_E_LOAD_FAILED;
    }
    a->mul = model[12];
    a->add = model[13];
    a->input_len = input_len;
    a->loaded = 1;
    /* The backend knows this model's tensors exactly: they replace what LOAD_BEGIN said. */
    io->n_inputs = 1;
    io->n_outputs = 2;
    set_desc(&io->inputs[0], K210W_DT_UINT8, input_len);
    set_desc(&io->outputs[0], K210W_DT_UINT8, input_len);
    set_desc(&io->outputs[1], K210W_DT_FLOAT32, 1);
    return 0;
}

static void unload(void *ctx)
{
    ((arith_backend_t *)ctx)->loaded = 0;
}

static int infer(void *ctx, const uint8_t *input, uint32_t len, k210w_output_t outputs[K210W_MAX_TENSORS],
                 uint8_t *n_outputs, uint32_t *micros, char *err, size_t err_cap)
{
    arith_backend_t *a = (arith_backend_t *)ctx;
    uint64_t start = a->now_us ? a->now_us() : 0;
    uint32_t i, sum = 0, bits;
    float total;
    if (!a->loaded || len != a->input_len) {
        snprintf(err, err_cap, "input of %lu bytes, the model takes %lu", (unsigned long)len,
                 (unsigned long)a->input_len);
        return K210W_E_INFER_FAILED;
    }
    for (i = 0; i < len; i++) {
        a->out0[i] = (uint8_t)(input[i] * a->mul + a->add);
        sum += input[i];
    }
    total = (float)sum;
    memcpy(&bits, &total, sizeof bits);
    a->sum_le[0] = (uint8_t)bits;
    a->sum_le[1] = (uint8_t)(bits >> 8);
    a->sum_le[2] = (uint8_t)(bits >> 16);
    a->sum_le[3] = (uint8_t)(bits >> 24);
    set_desc(&outputs[0].desc, K210W_DT_UINT8, len);
    outputs[0].data = a->out0;
    outputs[0].nbytes = len;
    set_desc(&outputs[1].desc, K210W_DT_FLOAT32, 1);
    outputs[1].data = a->sum_le;
    outputs[1].nbytes = 4;
    *n_outputs = 2;
    *micros = a->now_us ? (uint32_t)(a->now_us() - start) : 0;
    return 0;
}

void arith_backend_init(k210w_backend_t *b, arith_backend_t *a)
{
    memset(b, 0, sizeof *b);
    b->name = "c-host-arith";
    b->kmodel_versions = versions;
    b->n_kmodel_versions = sizeof versions;
    b->ctx = a;
    b->model_buffer = model_buffer;
    b->load = load;
    b->unload = unload;
    b->infer = infer;
}
