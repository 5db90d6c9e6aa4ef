// The CPU kernels' weight layouts (layouts.h).
#include "layouts.h"

#include <c10/util/Exception.h>

#include <sstream>

#include "tiers.h"

namespace fastresnet::cpu {

namespace {

// G of F(m x m, 3x3), (m + 2) x 3: the weight transform U = G g G^T.
at::Tensor winograd_g(int64_t m) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  if (m == 2) return at::tensor({1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0.0, 0.0, 1.0}, f64).view({4, 3});
  return at::tensor({1.0 / 4, 0.0, 0.0,                      //
                     -1.0 / 6, -1.0 / 6, -1.0 / 6,           //
                     -1.0 / 6, 1.0 / 6, -1.0 / 6,            //
                     1.0 / 24, 1.0 / 12, 1.0 / 6,            //
                     1.0 / 24, -1.0 / 12, 1.0 / 6,           //
                     0.0, 0.0, 1.0},
                    f64)
      .view({6, 3});
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool has_bf16_kernels(const CpuTier& tier) {
  return (" " + std::string(tier.facts.dtypes) + " ").find(" bfloat16 ") != std::string::npos;
}

}  // namespace

std::string WeightLayout::algorithm() const {
  if (kind != kWinograd) return "direct";
  return "winograd F(" + std::to_string(m) + "x" + std::to_string(m) + ",3x3)";
}

std::vector<at::ScalarType> WeightLayout::activation_dtypes() const {
  if (kind == kInt8Blocked) return {at::kByte};
  if (kind == kWinograd && has_bf16_kernels(*tier)) return {at::kFloat, at::kBFloat16};
  return {dtype()};
}

const std::vector<WeightLayout>& weight_layouts() {
  static const std::vector<WeightLayout> layouts = [] {
    std::vector<WeightLayout> all{{kLogicalLayout, WeightLayout::kLogical, nullptr, 0, 0}};
    for (const CpuTier* tier : compiled_tiers()) {
      const std::string prefix = std::string(tier->name()) + ":";
      all.push_back({prefix + "blocked", WeightLayout::kBlocked, tier, 0, 0});
      all.push_back({prefix + "winograd2x2", WeightLayout::kWinograd, tier, 2, 0});
      all.push_back({prefix + "winograd4x4", WeightLayout::kWinograd, tier, 4, 0});
      all.push_back({prefix + "int8-blocked", WeightLayout::kInt8Blocked, tier, 0, 0, &tier->int8});
      if (tier->int8_narrow.run != nullptr) {
        all.push_back({prefix + "int8-7bit", WeightLayout::kInt8Blocked, tier, 0, 0, &tier->int8_narrow});
      }
      if (!has_bf16_kernels(*tier)) continue;
      if (tier->bf16_widens) {
        all.push_back({prefix + "blocked-bf16-widened", WeightLayout::kBlockedBf16Widened, tier, 0, 0});
        continue;
      }
      all.push_back({prefix + "blocked-bf16", WeightLayout::kBlockedBf16, tier, 0, 0});
      all.push_back({prefix + "blocked-bf16-padded", WeightLayout::kBlockedBf16, tier, 0, 1});
    }
    return all;
  }();
  return layouts;
}

const WeightLayout& find_layout(const std::string& name, const char* op) {
  for (const WeightLayout& layout : weight_layouts()) {
    if (layout.name == name) return layout;
  }
  std::ostringstream known;
  for (const WeightLayout& layout : weight_layouts()) known << (known.tellp() > 0 ? ", " : "") << "'" << layout.name << "'";
  TORCH_CHECK_VALUE(false, op, ": unknown weight layout '", name, "'; this build has ", known.str());
}

const WeightLayout& tier_layout(const CpuTier& tier, const std::string& algorithm) {
  const std::string kind = algorithm == "direct" ? "blocked" : algorithm;
  return find_layout(std::string(tier.name()) + ":" + kind, "tier_layout");
}

const WeightLayout& tier_layout_bf16(const CpuTier& tier, int64_t in_c_per_group) {
  const char* kind = tier.bf16_widens            ? ":blocked-bf16-widened"
                     : in_c_per_group % 2 == 0 ? ":blocked-bf16"
                                               : ":blocked-bf16-padded";
  return find_layout(std::string(tier.name()) + kind, "tier_layout_bf16");
}

bool winograd_fits(const CpuTier& tier, int64_t out_c, int64_t in_c, int64_t kernel_h, int64_t kernel_w,
                   at::IntArrayRef stride, at::IntArrayRef dilation, int64_t groups) {
  const auto ones = [](at::IntArrayRef v) { return v.size() == 2 && v[0] == 1 && v[1] == 1; };
  return kernel_h == 3 && kernel_w == 3 && ones(stride) && ones(dilation) && groups == 1 && in_c % tier.lanes == 0 &&
         out_c % tier.block == 0;
}

std::array<int64_t, 4> weight_geometry(const WeightLayout& layout, at::IntArrayRef s, int64_t out_c, int64_t groups,
                                       const char* op) {
  switch (layout.kind) {
    case WeightLayout::kLogical:
      TORCH_CHECK_VALUE(s.size() == 4, op, ": expected a 4-D weight (C_out, C_in/groups, KH, KW) for layout '",
                        layout.name, "', got shape ", s);
      return {s[0], s[1], s[2], s[3]};
    case WeightLayout::kWinograd: {
      const int64_t t = layout.m + 2, block = layout.tier->block;
      TORCH_CHECK_VALUE(s.size() == 5 && s[0] == t && s[1] == t && s[4] == block && s[2] * block == out_c &&
                            groups == 1,
                        op, ": expected a weight laid out as '", layout.name, "', (", t, ", ", t, ", C_out/", block,
                        ", C_in, ", block, ") with groups=1 for C_out=", out_c, " (the bias's length); got ", s,
                        " with groups=", groups);
      return {out_c, s[3], 3, 3};
    }
    case WeightLayout::kBlocked: {
      const int64_t block = layout.tier->block;
      const bool ok = groups >= 1 && out_c % groups == 0 && s.size() == 6 && s[0] == groups &&
                      s[1] == ceil_div(out_c / groups, block) && s[5] == block;
      TORCH_CHECK_VALUE(ok, op, ": expected a weight laid out as '", layout.name, "', (groups=", groups,
                        ", ceil(C_out/groups/", block, "), KH, KW, C_in/groups, ", block, ") for C_out=", out_c,
                        " (the bias's length); got ", s);
      return {out_c, s[4], s[2], s[3]};
    }
    case WeightLayout::kBlockedBf16: {
      const int64_t block = layout.tier->block;
      const bool ok = groups >= 1 && out_c % groups == 0 && s.size() == 7 && s[0] == groups &&
                      s[1] == ceil_div(out_c / groups, block) && s[5] == block && s[6] == 2 &&
                      2 * s[4] - layout.pad_in >= 1;
      TORCH_CHECK_VALUE(ok, op, ": expected a weight laid out as '", layout.name, "', (groups=", groups,
                        ", ceil(C_out/groups/", block, "), KH, KW, (C_in/groups", layout.pad_in ? " + 1" : "",
                        ") / 2, ", block, ", 2) for C_out=", out_c, " (the bias's length); got ", s);
      return {out_c, 2 * s[4] - layout.pad_in, s[2], s[3]};
    }
    case WeightLayout::kBlockedBf16Widened: {
      const int64_t block = layout.tier->block;
      const bool ok = groups >= 1 && out_c % groups == 0 && s.size() == 7 && s[0] == groups &&
                      s[1] == ceil_div(out_c / groups, block) && s[5] == block / 2 && s[6] == 2;
      TORCH_CHECK_VALUE(ok, op, ": expected a weight laid out as '", layout.name, "', (groups=", groups,
                        ", ceil(C_out/groups/", block, "), KH, KW, C_in/groups, ", block / 2, ", 2) for C_out=", out_c,
                        " (the bias's length); got ", s);
      return {out_c, s[4], s[2], s[3]};
    }
    case WeightLayout::kInt8Blocked: {
      const int64_t block = layout.int8->block;
      const bool quads = layout.int8->packing == Int8Packing::kQuads;
      const bool head = groups >= 1 && out_c % groups == 0 && s.size() >= 5 && s[0] == groups &&
                        s[1] == ceil_div(out_c / groups, block);
      const bool tail = quads ? s.size() == 7 && s[5] == block && s[6] == 4
                              : s.size() == 8 && s[5] == 2 && s[6] == block && s[7] == 2;
      const std::string expected_tail = quads ? std::to_string(block) + ", 4" : "2, " + std::to_string(block) + ", 2";
      TORCH_CHECK_VALUE(head && tail, op, ": expected a weight laid out as '", layout.name, "', (groups=", groups,
                        ", ceil(C_out/groups/", block, "), KH, KW, C_in/groups rounded up to 4 / 4, ", expected_tail,
                        ") for C_out=", out_c, " (the bias's length); got ", s);
      return {out_c, 4 * s[4], s[2], s[3]};  // C_in/groups as padded
    }
  }
  TORCH_CHECK(false, op, ": unhandled layout kind");
}

at::Tensor pack_weight(const at::Tensor& weight, int64_t groups, const WeightLayout& layout, const char* op) {
  TORCH_CHECK_VALUE(weight.dim() == 4, op, ": expected a 4-D weight (C_out, C_in/groups, KH, KW), got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(groups >= 1 && weight.size(0) % groups == 0, op, ": groups=", groups, " must divide C_out=",
                    weight.size(0));
  const int64_t out_c = weight.size(0), in_c_g = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  switch (layout.kind) {
    case WeightLayout::kLogical:
      return weight;
    case WeightLayout::kBlocked: {
      const int64_t block = layout.tier->block, out_c_g = out_c / groups, blocks = ceil_div(out_c_g, block);
      at::Tensor w = weight.reshape({groups, out_c_g, in_c_g, kh, kw});
      w = at::constant_pad_nd(w, {0, 0, 0, 0, 0, 0, 0, blocks * block - out_c_g});  // zero output channels
      // (G, NB, B, C_in/G, KH, KW) -> (G, NB, KH, KW, C_in/G, B): a block's reduction axis in
      // NHWC order (kernel row, kernel column, channel), B output channels side by side.
      return w.reshape({groups, blocks, block, in_c_g, kh, kw}).permute({0, 1, 4, 5, 3, 2}).contiguous();
    }
    case WeightLayout::kBlockedBf16: {
      const int64_t block = layout.tier->block, out_c_g = out_c / groups, blocks = ceil_div(out_c_g, block);
      const int64_t in_c_padded = in_c_g + layout.pad_in;
      TORCH_CHECK_VALUE(in_c_padded % 2 == 0, op, ": layout '", layout.name, "' is for ",
                        layout.pad_in ? "odd" : "even", " C_in/groups, got ", in_c_g);
      at::Tensor w = weight.to(at::kBFloat16).reshape({groups, out_c_g, in_c_g, kh, kw});
      w = at::constant_pad_nd(w, {0, 0, 0, 0, 0, layout.pad_in, 0, blocks * block - out_c_g});  // zeros
      // (G, NB, B, C, KH, KW) -> (G, NB, KH, KW, C/2, B, 2): as "blocked", each pair of
      // consecutive reduction steps (channels c, c + 1) side by side per output channel.
      return w.reshape({groups, blocks, block, in_c_padded / 2, 2, kh, kw}).permute({0, 1, 5, 6, 3, 2, 4}).contiguous();
    }
    case WeightLayout::kBlockedBf16Widened: {
      const int64_t block = layout.tier->block, out_c_g = out_c / groups, blocks = ceil_div(out_c_g, block);
      at::Tensor w = weight.to(at::kBFloat16).reshape({groups, out_c_g, in_c_g, kh, kw});
      w = at::constant_pad_nd(w, {0, 0, 0, 0, 0, 0, 0, blocks * block - out_c_g});  // zero output channels
      // (G, NB, vector, lane, C, KH, KW) -> (G, NB, KH, KW, C, lane, vector): as "blocked",
      // with channels j and j + B/2 of each step side by side.
      return w.reshape({groups, blocks, 2, block / 2, in_c_g, kh, kw}).permute({0, 1, 5, 6, 4, 3, 2}).contiguous();
    }
    case WeightLayout::kInt8Blocked: {
      TORCH_CHECK_VALUE(weight.scalar_type() == at::kChar, op, ": layout '", layout.name,
                        "' packs an int8 weight, got ", weight.scalar_type());
      const int64_t bound = layout.int8->weight_bound;
      if (bound < 127 && weight.numel() > 0) {  // the kernels' products would saturate beyond it
        const int64_t lo = weight.min().item<int64_t>(), hi = weight.max().item<int64_t>();
        TORCH_CHECK_VALUE(-bound <= lo && hi <= bound, op, ": layout '", layout.name, "' takes int8 weights in -",
                          bound, "..", bound, ", got ", lo, "..", hi, " (the tier's 'int8-blocked' takes any)");
      }
      const int64_t block = layout.int8->block, out_c_g = out_c / groups, blocks = ceil_div(out_c_g, block);
      const int64_t in_c4 = ceil_div(in_c_g, 4) * 4;
      at::Tensor w = weight.to(layout.dtype()).reshape({groups, out_c_g, in_c_g, kh, kw});
      w = at::constant_pad_nd(w, {0, 0, 0, 0, 0, in_c4 - in_c_g, 0, blocks * block - out_c_g});  // zeros
      if (layout.int8->packing == Int8Packing::kQuads) {
        // (G, NB, B, C4/4, step, KH, KW) -> (G, NB, KH, KW, C4/4, B, step): step 4q + step.
        return w.reshape({groups, blocks, block, in_c4 / 4, 4, kh, kw}).permute({0, 1, 5, 6, 3, 2, 4}).contiguous();
      }
      // (G, NB, B, C4/4, pair, half, KH, KW) -> (G, NB, KH, KW, C4/4, half, B, pair): step 4q + half + 2 pair.
      return w.reshape({groups, blocks, block, in_c4 / 4, 2, 2, kh, kw}).permute({0, 1, 6, 7, 3, 5, 2, 4}).contiguous();
    }
    case WeightLayout::kWinograd: {
      const int64_t block = layout.tier->block, t = layout.m + 2;
      TORCH_CHECK_VALUE(kh == 3 && kw == 3 && groups == 1 && out_c % block == 0, op, ": layout '", layout.name,
                        "' needs a (C_out, C_in, 3, 3) weight with C_out a multiple of ", block,
                        " and groups=1; got shape ", weight.sizes(), " with groups=", groups);
      const at::Tensor g = winograd_g(layout.m);
      // In float64, then one rounding to the layout's float32 (a bf16 g included: see WinogradTensorsOf).
      const at::Tensor u = at::matmul(at::matmul(g, weight.to(at::kDouble)), g.t()).to(layout.dtype());
      // (C_out/B, B, C_in, T, T) -> (T, T, C_out/B, C_in, B)
      return u.reshape({out_c / block, block, in_c_g, t, t}).permute({3, 4, 0, 2, 1}).contiguous();
    }
  }
  TORCH_CHECK(false, op, ": unhandled layout kind");
}

namespace {

// Where reduction step k of output channel j sits in one block's panel of an int8 layout.
int64_t int8_step_offset(Int8Packing packing, int64_t block, int64_t k, int64_t j) {
  const int64_t quad = k / 4 * 4 * block, step = k % 4;
  if (packing == Int8Packing::kQuads) return quad + j * 4 + step;
  return quad + step % 2 * 2 * block + j * 2 + step / 2;  // kWidenedPairs: steps (0, 2), then (1, 3)
}

template <class Weight>
void repack_row_windows(const Weight* from, Weight* to, Int8Packing packing, int64_t blocks, int64_t block,
                        int64_t kernel_h, int64_t kernel_w, int64_t in_c, int64_t row_steps) {
  const int64_t from_panel = kernel_h * kernel_w * 4 * block, to_panel = kernel_h * row_steps * block;
  for (int64_t b = 0; b < blocks; ++b, from += from_panel, to += to_panel) {
    for (int64_t kh = 0; kh < kernel_h; ++kh) {
      for (int64_t r = 0; r < row_steps; ++r) {
        const int64_t tap = kh * kernel_w + r / in_c;  // its 4 steps: channels 0..3, in_c of them real
        for (int64_t j = 0; j < block; ++j) {
          to[int8_step_offset(packing, block, kh * row_steps + r, j)] =
              r < kernel_w * in_c ? from[int8_step_offset(packing, block, tap * 4 + r % in_c, j)] : Weight{0};
        }
      }
    }
  }
}

}  // namespace

at::Tensor int8_row_window_weight(const at::Tensor& packed, const WeightLayout& layout, int64_t in_c,
                                  int64_t kernel_w) {
  TORCH_CHECK(layout.kind == WeightLayout::kInt8Blocked && packed.size(0) == 1 && packed.size(3) == kernel_w &&
                  packed.size(4) == 1 && in_c >= 1 && in_c < 4 && packed.is_contiguous(),
              "int8_row_window_weight: expected a contiguous int8-blocked weight of one group and fewer than 4 input "
              "channels, got shape ", packed.sizes(), " for C_in=", in_c);
  const int64_t blocks = packed.size(1), kernel_h = packed.size(2), block = layout.int8->block;
  const int64_t row_steps = ceil_div(kernel_w * in_c, 4) * 4;
  at::Tensor windows = at::empty({blocks * kernel_h * row_steps * block}, packed.options());
  const auto repack = [&](auto element) {
    using Weight = decltype(element);
    repack_row_windows(packed.const_data_ptr<Weight>(), windows.mutable_data_ptr<Weight>(), layout.int8->packing,
                       blocks, block, kernel_h, kernel_w, in_c, row_steps);
  };
  if (packed.scalar_type() == at::kChar)
    repack(int8_t{});
  else
    repack(int16_t{});
  return windows;
}

at::Tensor unpack_weight(const at::Tensor& packed, const WeightLayout& layout, int64_t out_c, int64_t groups) {
  const char* op = "unpack_conv_weight";
  TORCH_CHECK_VALUE(layout.kind != WeightLayout::kInt8Blocked, op, ": layout '", layout.name,
                    "' is not unpacked (its padding hides C_in); an int8 model keeps its logical weight");
  const auto geometry = weight_geometry(layout, packed.sizes(), out_c, groups, op);
  switch (layout.kind) {
    case WeightLayout::kLogical:
      return packed;
    case WeightLayout::kBlocked: {
      const int64_t blocks = packed.size(1), block = packed.size(5), in_c_g = geometry[1];
      const at::Tensor w = packed.permute({0, 1, 5, 4, 2, 3}).reshape({groups, blocks * block, in_c_g, geometry[2],
                                                                        geometry[3]});
      return w.slice(1, 0, out_c / groups).reshape({out_c, in_c_g, geometry[2], geometry[3]}).contiguous();
    }
    case WeightLayout::kBlockedBf16: {
      const int64_t blocks = packed.size(1), block = packed.size(5), pairs = packed.size(4);
      // (G, NB, KH, KW, C/2, B, 2) -> (G, NB, B, C/2, 2, KH, KW) -> (G, NB * B, C, KH, KW)
      const at::Tensor w = packed.permute({0, 1, 5, 4, 6, 2, 3}).reshape({groups, blocks * block, 2 * pairs,
                                                                           geometry[2], geometry[3]});
      return w.slice(1, 0, out_c / groups).slice(2, 0, geometry[1]).reshape({out_c, geometry[1], geometry[2],
                                                                             geometry[3]}).contiguous();
    }
    case WeightLayout::kBlockedBf16Widened: {
      const int64_t blocks = packed.size(1), in_c_g = geometry[1];
      // (G, NB, KH, KW, C, lane, vector) -> (G, NB, vector, lane, C, KH, KW) -> (G, NB * B, C, KH, KW)
      const at::Tensor w = packed.permute({0, 1, 6, 5, 4, 2, 3}).reshape({groups, blocks * layout.tier->block, in_c_g,
                                                                           geometry[2], geometry[3]});
      return w.slice(1, 0, out_c / groups).reshape({out_c, in_c_g, geometry[2], geometry[3]}).contiguous();
    }
    case WeightLayout::kWinograd: {
      const int64_t t = layout.m + 2, in_c = geometry[1];
      const at::Tensor u = packed.permute({2, 4, 3, 0, 1}).reshape({out_c, in_c, t, t}).to(at::kDouble);
      const at::Tensor g_pinv = at::linalg_pinv(winograd_g(layout.m));
      return at::matmul(at::matmul(g_pinv, u), g_pinv.t()).to(packed.scalar_type()).contiguous();
    }
    case WeightLayout::kInt8Blocked:
      break;  // refused above
  }
  TORCH_CHECK(false, op, ": unhandled layout kind");
}

}  // namespace fastresnet::cpu
