// Loop bodies of the fused AFF / MS-CAM tails.  Included twice by aff_tail.cc: once for the
// baseline x86-64 target and once under `#pragma GCC target("avx2,fma")`, each time inside its
// own namespace, so this file has no include guard and includes nothing itself.
//
// Layout: every full-size tensor is a contiguous float32 array of `planes` rows of `hw`
// elements (planes = N*C, hw = H*W); G holds one value per row.  The inner loops are plain
// element-wise code that GCC vectorises (-O3 -fno-math-errno -fno-trapping-math); the rows are
// shared out among OpenMP threads, so each thread owns the dG entries of its rows.

// e^x to about 2 ulp for |x| <= 87: x = k*ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial
// of degree 7 (truncation < 6e-9), 2^k built in the exponent field.  |x| is clamped to 87 (where
// a float32 sigmoid is 0 or 1 anyway) on the integer bits -- a float compare-and-select there
// made GCC duplicate the whole computation per branch (2x slower MS-CAM loop) -- and NaN is
// passed through as NaN.  Branch-free, so the loops calling it vectorise.
static inline float exp_approx(float x) {
  int32_t u;
  __builtin_memcpy(&u, &x, sizeof u);
  const int32_t mag = u & 0x7fffffff, sign = u & static_cast<int32_t>(0x80000000u);
  const int32_t bits87 = 0x42ae0000;                          // 87.0f
  const int32_t clamped = (mag < bits87 ? mag : bits87) | sign;
  float y;
  __builtin_memcpy(&y, &clamped, sizeof y);
  const float round_magic = 12582912.0f;                      // 1.5 * 2^23
  const float k = (y * 1.44269504088896341f + round_magic) - round_magic;   // round(y/ln2)
  float r = y - k * 0.693359375f;                             // ln2 split in a short high part
  r = r - k * -2.12194440054690583e-4f;                       // and the rest
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k, k in [-126, 126]
  float two_k;
  __builtin_memcpy(&two_k, &bits, sizeof two_k);
  return x == x ? p * two_k : x;
}

static inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

// kSelect (aff_tail):    Z = s * (B + W * (A - B)),  W = sigmoid(L + G)
// !kSelect (mscam_tail): Z = A * W  (B is not read; s = 1)
template <bool kSelect>
static void tail_forward(const float* __restrict a, const float* __restrict b,
                         const float* __restrict l, const float* __restrict g,
                         float* __restrict z, int64_t planes, int64_t hw, float s) {
#pragma omp parallel for schedule(static) if (planes * hw >= 32768)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t o = p * hw;
    const float gp = g[p];
    for (int64_t i = 0; i < hw; ++i) {
      const float w = sigmoid_approx(l[o + i] + gp);
      z[o + i] = kSelect ? s * (b[o + i] + w * (a[o + i] - b[o + i])) : a[o + i] * w;
    }
  }
}

// dA = s dZ W,  dB = s dZ (1 - W) (kSelect only),  dL = s dZ (A - B) W (1 - W) (B = 0 without
// kSelect),  dG = the sum of dL over the row (accumulated in double)
template <bool kSelect>
static void tail_backward(const float* __restrict dz, const float* __restrict a,
                          const float* __restrict b, const float* __restrict l,
                          const float* __restrict g, float* __restrict da,
                          float* __restrict db, float* __restrict dl, float* __restrict dg,
                          int64_t planes, int64_t hw, float s) {
#pragma omp parallel for schedule(static) if (planes * hw >= 16384)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t o = p * hw;
    const float gp = g[p];
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < hw; ++i) {
      const float w = sigmoid_approx(l[o + i] + gp);
      const float d = kSelect ? s * dz[o + i] : dz[o + i];
      const float dw = d * w;
      const float t = dw * (1.0f - w) * (kSelect ? a[o + i] - b[o + i] : a[o + i]);
      da[o + i] = dw;
      if (kSelect) db[o + i] = d - dw;
      dl[o + i] = t;
      acc += t;
    }
    dg[p] = static_cast<float>(acc);
  }
}
