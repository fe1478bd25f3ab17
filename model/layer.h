// One decoder layer, forward and backward: the pipeline that training (model.cpp) and decoding
// (generate.cpp) share, so that every architecture's steps (QK-norm, NoPE layers, post norms, ...)
// are written once. The two differ only in how they attend, which the forward takes as a hook.
#pragma once
#include <functional>

#include "model/linear.h"

// One layer's activations for N rows, in the backend's memory (zero-filled), and their bytes
// (act_size: the backend's storage type).
void layer_acts_init(LayerActs& a, const Model& m, size_t N, const Ops& ops);
size_t layer_acts_bytes(const Model& m, size_t N, size_t act_size);

// The attention of layer l: reads A.q, A.k, A.v (after QK-norm and RoPE), writes A.att, and A.lse
// when a backward will follow. Training attends within the batch's sequences; decoding first puts
// k and v into its cache and attends over that.
using Attend = std::function<void(LayerActs& A, int l)>;

// Layer l on N rows: x (the residual stream, [N, dim]) in, out = the layer's output; pos holds
// each row's position (RoPE). out may be x itself when nothing reads the layer's input afterwards
// (decoding: x is read for the last time before out is written).
void layer_forward(const Pass& P, int l, int N, const act* x, act* out, const int32_t* pos, LayerActs& A,
                   const Attend& attend);

// On entry ws.dresid = dL/d(layer output); on exit dL/d(layer input). A holds what layer_forward
// saved for this layer (refilled first, with recompute).
void layer_backward(const Pass& P, Workspace& ws, int l, const LayerActs& A);
