// The model on a backend. The CPU backend computes straight from the Model's FP32 vectors; CUDA
// computes from a device copy in BF16 (NF4 for a quantized base) and trains FP32 masters:
//
//   host Model (FP32 files' view) --model_upload--> DeviceModel: params/adapters (BF16, what the ops read)
//                                                                masters (FP32, what AdamW updates,
//                                                                then casts into the BF16 copy; only
//                                                                when uploaded for training)
//   host Model <--model_download-- masters (before saving a checkpoint, merging, exporting)
#include <algorithm>

#include "model/model.h"
#include "model/util.h"

namespace {
// NF4 parts live in one device buffer, each part aligned so every pointer suits 128-bit loads (more
// would only add padding that the memory estimate does not have).
size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

// The device copy that training on `ops` updates; fails instead of handing out a null pointer.
DeviceModel& trained_copy(Model& m, const Ops& ops) {
    if (!m.device || m.device->ops != &ops || !m.device->trained)
        fail("internal: the model is not on the %s backend for training (model_upload with train)", ops.name);
    return *m.device;
}
}  // namespace

void model_upload(Model& m, const Ops& ops, bool train, bool host_masters) {
    m.device.reset();  // a re-upload (after loading a checkpoint) frees the old copy first
    if (ops.host) return;
    auto d = std::make_shared<DeviceModel>();
    d->ops = &ops;
    d->params = act_buffer(ops, m.params.size(), Mem::weights);
    ops.upload(d->params.a(), m.params.data(), m.params.size());
    if (m.has_adapters()) {
        d->adapters = act_buffer(ops, m.adapters.size(), Mem::adapters);
        ops.upload(d->adapters.a(), m.adapters.data(), m.adapters.size());
        const std::vector<int32_t>& e = m.lora.tokens[LORA_TABLE_EMBED], &h = m.lora.tokens[LORA_TABLE_LM_HEAD];
        if (m.lora.has_tokens()) {
            d->token_ids = Buffer(ops, (e.size() + h.size()) * sizeof(int32_t), Mem::adapters);
            if (!e.empty()) ops.to_device(d->token_ids.p, e.data(), e.size() * sizeof(int32_t));
            if (!h.empty()) ops.to_device(d->token_ids.i() + e.size(), h.data(), h.size() * sizeof(int32_t));
            d->view.tokens[LORA_TABLE_EMBED] = d->token_ids.i();
            d->view.tokens[LORA_TABLE_LM_HEAD] = d->token_ids.i() + (m.cfg.tied_embeddings ? 0 : e.size());
        }
    }
    d->trained = train;
    if (train && !host_masters) {
        // The FP32 masters of what is trained (AdamW's copy; the ops read the storage-type one).
        // Decoding needs none: for a full model they would be 4 more bytes per weight.
        const std::vector<float>& trained = m.has_adapters() ? m.adapters : m.params;
        d->masters = Buffer(ops, trained.size() * sizeof(float), Mem::optimizer);
        ops.to_device(d->masters.p, trained.data(), trained.size() * sizeof(float));
    }
    if (!m.nf4.empty()) {
        size_t total = 0, largest = 0;
        for (const NF4Weight& q : m.nf4) {
            total += align16(q.codes.size()) + align16(q.qabsmax.size()) + align16(q.qscale.size() * sizeof(float));
            largest = std::max(largest, q.n);
        }
        d->nf4 = Buffer(ops, total, Mem::weights);
        size_t at = 0;
        auto put = [&](const void* src, size_t bytes) {
            uint8_t* dst = d->nf4.u8() + at;
            ops.to_device(dst, src, bytes);
            at += align16(bytes);
            return dst;
        };
        for (const NF4Weight& q : m.nf4) {
            NF4View v;
            v.codes = put(q.codes.data(), q.codes.size());
            v.qabsmax = put(q.qabsmax.data(), q.qabsmax.size());
            v.qscale = (const float*)put(q.qscale.data(), q.qscale.size() * sizeof(float));
            v.offset = q.offset;
            v.n = q.n;
            d->view.nf4.push_back(v);
        }
        d->dequant = act_buffer(ops, largest, Mem::scratch);
    }
    d->view.params = d->params.a();
    d->view.adapters = d->adapters.a();
    d->view.dequant = d->dequant.a();
    m.device = std::move(d);
}

void model_download(Model& m) {
    if (!m.device || !m.device->masters.p) return;  // nothing was trained off the host
    std::vector<float>& trained = m.has_adapters() ? m.adapters : m.params;
    m.device->ops->to_host(trained.data(), m.device->masters.p, trained.size() * sizeof(float));
    model_put_token_rows(m, cpu_ops());  // the host tables as the trained rows have them
}

WeightsView model_weights(const Model& m, const Ops& ops) {
    if (!ops.host) {
        if (!m.device || m.device->ops != &ops) fail("internal: the model is not on the %s backend (model_upload)", ops.name);
        return m.device->view;
    }
    WeightsView v;
    v.params = as_act(m.params.data());
    v.adapters = as_act(m.adapters.data());
    for (const NF4Weight& q : m.nf4) v.nf4.push_back(nf4_view(q));
    v.dequant = as_act(m.dequant.data());
    for (int t = 0; t < LORA_NUM_TABLES && m.has_adapters(); t++) v.tokens[t] = lora_table_tokens(m.cfg, m.lora, t).data();
    return v;
}

void model_put_token_rows(Model& m, const Ops& ops) {
    if (!m.has_adapters() || !m.lora.has_tokens()) return;
    const WeightsView W = model_weights(m, ops);
    act* params = ops.host ? as_act(m.params.data()) : m.device->params.a();
    for (int t = 0; t < LORA_NUM_TABLES; t++)
        if (const int k = (int)m.lora.tokens[t].size())
            ops.scatter_rows(ops.at(params, t == LORA_TABLE_EMBED ? m.off.embed : m.off.lm_head),
                             ops.at(W.adapters, m.lora_layout.tokens[t]), W.tokens[t], k, m.cfg.dim);
}

float* model_masters(Model& m, const Ops& ops) {
    if (ops.host) return m.trainable();
    float* p = trained_copy(m, ops).masters.f();
    if (!p) fail("internal: the masters are on the host (model_upload with host_masters)");
    return p;
}

act* model_compute_copy(Model& m, const Ops& ops) {
    if (ops.host) return nullptr;
    DeviceModel& d = trained_copy(m, ops);
    return m.has_adapters() ? d.adapters.a() : d.params.a();
}
