// Fused tails of AFF / iAFF and MS-CAM as MXNet 1.9 custom operators (lib_api, CPU, float32).
//
//   aff_tail(A, B, L, G, scale=1)  Z = scale * (B + sigmoid(L + G) * (A - B))
//   mscam_tail(X, L, G)            Z = X * sigmoid(L + G)
//
// A, B, L, X: N x C x ... (contiguous, same shape); G: N x C x 1 ... (one value per channel,
// broadcast over the spatial dims; its gradient is summed over them).  Built by
// `python -m net.kernels.build`; loaded by net.kernels.load().  See net/kernels/README.md.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using Attrs = std::unordered_map<std::string, std::string>;
using Shapes = std::vector<std::vector<unsigned int>>;

#if !defined(__x86_64__)
#error "aff_tail.cc is written for x86-64 (a baseline build plus an AVX2+FMA build)"
#endif

namespace generic {
#include "aff_tail_kernels.h"
}  // namespace generic

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "aff_tail_kernels.h"
}  // namespace avx2
#pragma GCC pop_options

namespace {

// One set of loops per instruction set; `best` is chosen in initialize() from the running CPU.
struct Kernels {
  const char* isa;
  decltype(&generic::tail_forward<true>) forward[2];    // [kSelect]
  decltype(&generic::tail_backward<true>) backward[2];
};
const Kernels kGeneric = {"generic",
                          {generic::tail_forward<false>, generic::tail_forward<true>},
                          {generic::tail_backward<false>, generic::tail_backward<true>}};
const Kernels kAvx2 = {"avx2+fma", {avx2::tail_forward<false>, avx2::tail_forward<true>},
                       {avx2::tail_backward<false>, avx2::tail_backward<true>}};
const Kernels* best = &kGeneric;

// attribute `isa`: "auto" (default, the load-time choice) or "generic" (forces the fallback,
// for tests on a machine that has AVX2)
const Kernels& kernels_for(const Attrs& attrs) {
  auto it = attrs.find("isa");
  if (it != attrs.end() && it->second == "generic") return kGeneric;
  return *best;
}

bool parse_scale(const Attrs& attrs, float* scale) {
  *scale = 1.0f;
  auto it = attrs.find("scale");
  if (it == attrs.end()) return true;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0') {
    MX_ERROR_MSG << "aff_tail: scale must be a number, got '" << it->second << "'";
    return false;
  }
  *scale = static_cast<float>(v);
  return true;
}

bool check_attrs(const char* op, const Attrs& attrs, bool has_scale) {
  for (const auto& kv : attrs) {
    const std::string& k = kv.first;
    if (k.compare(0, 2, "__") == 0) continue;  // MXNet's own (__profiler_scope__ ...)
    if (k == "isa") {
      if (kv.second != "auto" && kv.second != "generic") {
        MX_ERROR_MSG << op << ": isa must be 'auto' or 'generic', got '" << kv.second << "'";
        return false;
      }
    } else if (!(has_scale && k == "scale")) {
      MX_ERROR_MSG << op << ": unknown attribute '" << k << "'";
      return false;
    }
  }
  float s;
  return !has_scale || parse_scale(attrs, &s);
}

std::string shape_str(const std::vector<unsigned int>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + ")";
}

// inputs: `full` maps of one shape N x C x ..., then G of shape N x C x 1 ...
MXReturnValue infer_shape(const char* op, int full, Shapes* in, Shapes* out) {
  const auto& x = (*in)[0];
  if (x.size() < 2) {
    MX_ERROR_MSG << op << ": inputs must be N x C x ... (NCHW), got " << shape_str(x);
    return MX_FAIL;
  }
  for (int i = 1; i < full; ++i)
    if ((*in)[i] != x) {
      MX_ERROR_MSG << op << ": input " << i << " has shape " << shape_str((*in)[i])
                   << ", input 0 has " << shape_str(x) << "; they must be equal";
      return MX_FAIL;
    }
  const auto& g = (*in)[full];
  bool ok = g.size() == x.size() && g[0] == x[0] && g[1] == x[1];
  for (size_t d = 2; ok && d < g.size(); ++d) ok = g[d] == 1;
  if (!ok) {
    MX_ERROR_MSG << op << ": the global context must be N x C x 1 x 1 for maps "
                 << shape_str(x) << ", got " << shape_str(g);
    return MX_FAIL;
  }
  (*out)[0] = x;
  return MX_SUCCESS;
}

MXReturnValue infer_type(const char* op, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < in->size(); ++i)
    if ((*in)[i] != mxnet::ext::kFloat32) {
      MX_ERROR_MSG << op << ": float32 only (input " << i << " has MXNet dtype " << (*in)[i]
                   << ")";
      return MX_FAIL;
    }
  (*out)[0] = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

bool on_cpu(const char* op, const std::vector<MXTensor>& ts) {
  for (const auto& t : ts)
    if (t.ctx.dev_type != "cpu" || t.stype != mxnet::ext::kDefaultStorage) {
      MX_ERROR_MSG << op << ": dense CPU tensors only";
      return false;
    }
  return true;
}

const float* in_ptr(std::vector<MXTensor>* v, int i) { return (*v)[i].data<float>(); }
float* out_ptr(std::vector<MXTensor>* v, int i) { return (*v)[i].data<float>(); }
int64_t planes_of(const MXTensor& t) { return t.shape[0] * t.shape[1]; }
int64_t hw_of(const MXTensor& t) { return t.size() / planes_of(t); }

// ------------------------------------------------------------------- the two operators
// kSelect: aff_tail(A, B, L, G; scale); else mscam_tail(X, L, G), which reads no B and has s = 1.
template <bool kSelect>
struct Op {
  static constexpr const char* name = kSelect ? "aff_tail" : "mscam_tail";
  static constexpr int full = kSelect ? 3 : 2;      // inputs of the maps' shape, then G

  static MXReturnValue parse(const Attrs& attrs, int* num_in, int* num_out) {
    *num_in = full + 1;
    *num_out = 1;
    return check_attrs(name, attrs, kSelect) ? MX_SUCCESS : MX_FAIL;
  }

  static MXReturnValue shape(const Attrs&, Shapes* in, Shapes* out) {
    return infer_shape(name, full, in, out);
  }

  static MXReturnValue type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
    return infer_type(name, in, out);
  }

  // forward inputs: A, [B,] L, G
  static MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in,
                               std::vector<MXTensor>* out, const OpResource&) {
    float s;
    if (!parse_scale(attrs, &s) || !on_cpu(name, *in)) return MX_FAIL;
    const MXTensor& a = (*in)[0];
    if (a.size() == 0) return MX_SUCCESS;
    const float* b = kSelect ? in_ptr(in, 1) : nullptr;
    kernels_for(attrs).forward[kSelect](in_ptr(in, 0), b, in_ptr(in, full - 1),
                                        in_ptr(in, full), out_ptr(out, 0), planes_of(a),
                                        hw_of(a), s);
    return MX_SUCCESS;
  }

  // backward inputs: dZ, then the forward inputs, then the output Z; outputs: dA, [dB,] dL, dG,
  // always written (lib_api passes no write/add request: net.kernels.may_fuse guards 'add')
  static MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                                std::vector<MXTensor>* out, const OpResource&) {
    float s;
    if (!parse_scale(attrs, &s) || !on_cpu(name, *in)) return MX_FAIL;
    const MXTensor& a = (*in)[1];
    if (a.size() == 0) return MX_SUCCESS;
    const float* b = kSelect ? in_ptr(in, 2) : nullptr;
    float* db = kSelect ? out_ptr(out, 1) : nullptr;
    kernels_for(attrs).backward[kSelect](in_ptr(in, 0), in_ptr(in, 1), b, in_ptr(in, full),
                                         in_ptr(in, full + 1), out_ptr(out, 0), db,
                                         out_ptr(out, full - 1), out_ptr(out, full),
                                         planes_of(a), hw_of(a), s);
    return MX_SUCCESS;
  }
};

}  // namespace

REGISTER_OP(aff_tail)
    .setParseAttrs(Op<true>::parse)
    .setInferType(Op<true>::type)
    .setInferShape(Op<true>::shape)
    .setForward(Op<true>::forward, "cpu")
    .setBackward(Op<true>::backward, "cpu");

REGISTER_OP(mscam_tail)
    .setParseAttrs(Op<false>::parse)
    .setInferType(Op<false>::type)
    .setInferShape(Op<false>::shape)
    .setForward(Op<false>::forward, "cpu")
    .setBackward(Op<false>::backward, "cpu");

// Called by MXNet's MXLoadLib: refuse other MXNet versions (the lib_api ABI of 1.9.x), pick the
// instruction set.
MXReturnValue initialize(int version) {
  if (version < 10900 || version >= 11000) {
    MX_ERROR_MSG << "aff_tail was built for MXNet 1.9.x, this is version " << version;
    return MX_FAIL;
  }
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = &kAvx2;
  return MX_SUCCESS;
}

// The instruction set chosen at load time, for the log (read through ctypes).
extern "C" __attribute__((visibility("default"))) const char* aff_tail_isa() { return best->isa; }
