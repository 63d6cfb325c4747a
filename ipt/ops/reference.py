"""Pure-PyTorch reference of every compiled op: the executable spec the kernels are tested against,
and the path ipt.ops takes where no compiled kernel exists. Written for clarity, not speed; the
degradations compute in float64 and follow the formulas literally (see csrc/common for the kernels'
shared math, which must give the same numbers)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import checks
from .checks import degraded_dtype
from .contract import BLUR_PARAMS, OPS, RAIN_LAYER_PARAMS

# The compiled ops (csrc/ops.cpp) that this module mirrors, by name.
__all__ = list(OPS)  # one function per compiled op, by the same name
# Each op validates its arguments with ipt.ops.checks, the checks the fake kernels run too.


# --- patch unfold / fold -----------------------------------------------------------------------------


def patch_unfold(x: torch.Tensor, patch_dim: int, pos: torch.Tensor | None = None) -> torch.Tensor:
    checks.check_patch_unfold(x, patch_dim, pos)
    tokens = F.unfold(x, patch_dim, stride=patch_dim).transpose(1, 2)
    return tokens + pos if pos is not None else tokens.contiguous()


def patch_fold(tokens: torch.Tensor, patch_dim: int, size) -> torch.Tensor:
    checks.check_patch_fold(tokens, patch_dim, size)
    return F.fold(tokens.transpose(1, 2), tuple(size), patch_dim, stride=patch_dim)


# --- MATLAB bicubic imresize ---------------------------------------------------------------------------


def _cube(a: torch.Tensor) -> torch.Tensor:
    """a^3 rounded once (as MATLAB's absx.^3): math.pow per element (the tables are small)."""
    return torch.tensor([math.pow(v, 3.0) for v in a.flatten().tolist()], dtype=torch.float64).reshape(a.shape)


def keys_cubic(d: torch.Tensor) -> torch.Tensor:
    a = d.abs()
    a2, a3 = a * a, _cube(a)
    near = (1.5 * a3 - 2.5 * a2 + 1) * (a <= 1)
    far = (-0.5 * a3 + 2.5 * a2 - 4 * a + 2) * ((a > 1) & (a <= 2))
    return near + far


def mirror_index(pos: torch.Tensor, n: int) -> torch.Tensor:
    """0-based mirrored index (edge repeated): MATLAB's [1:n, n:-1:1] table applied periodically."""
    q = torch.remainder(pos, 2 * n)
    return torch.where(q < n, q, 2 * n - 1 - q)


def resize_taps(in_len: int, out_len: int, scale: float):
    """(weights, 0-based indices), each (out_len, taps): MATLAB's contributions() along one axis, with
    MATLAB's scale (output/input) and MATLAB's arithmetic."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    taps = math.ceil(width) + 2
    u = torch.arange(1, out_len + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)  # 1-based centres
    left = torch.floor(u - width / 2)
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)  # 1-based taps
    distance = u[:, None] - index
    weights = scale * keys_cubic(scale * distance) if antialias else keys_cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights, mirror_index(index.long() - 1, in_len)


def _matlab_uint8(v: torch.Tensor) -> torch.Tensor:
    """MATLAB's double -> uint8: round half away from zero, saturate (kept as float64)."""
    return torch.floor(v + 0.5).clamp_(0, 255)


def _resize_axis(v: torch.Tensor, dim: int, out_len: int, scale: float) -> torch.Tensor:
    """Resizes float64 `v` along `dim`, summing tap by tap in order (as MATLAB's imresizemex does)."""
    weights, index = resize_taps(v.shape[dim], out_len, scale)
    v = v.movedim(dim, -1)
    out = torch.zeros(*v.shape[:-1], out_len, dtype=torch.float64)
    for k in range(weights.shape[1]):
        out += weights[:, k] * v[..., index[:, k]]
    return out.movedim(-1, dim)


def bicubic_resize(x: torch.Tensor, size, scale) -> torch.Tensor:
    checks.check_bicubic_resize(x, size, scale)
    order = (2, 3) if scale[0] <= scale[1] else (3, 2)  # the axis with the smaller scale first
    v = x.cpu().to(torch.float64)
    for dim in order:
        v = _resize_axis(v, dim, size[dim - 2], scale[dim - 2])
        if x.dtype == torch.uint8:
            v = _matlab_uint8(v)
        elif x.dtype != torch.float64:  # the narrower float types keep float32 between the passes
            v = v.float().double()
    return v.to(device=x.device, dtype=x.dtype)


# --- Philox4x32-10 counter-based random numbers -----------------------------------------------------------

MASK32 = 0xFFFFFFFF
NOISE_DOMAIN, RAIN_SEED_DOMAIN, RAIN_PARAM_DOMAIN, BLUR_PATH_DOMAIN, BLUR_PARAM_DOMAIN = 0, 1, 2, 3, 4


def _mulhilo32(a: int, b: torch.Tensor):
    """High and low 32-bit words of a * b (b: int64 tensor of uint32 values) without int64 overflow."""
    p_lo = a * (b & 0xFFFF)  # < 2^48
    p_hi = a * (b >> 16)  # < 2^48; product = p_hi * 2^16 + p_lo
    low_sum = p_lo + ((p_hi & 0xFFFF) << 16)
    return (p_hi >> 16) + (low_sum >> 32), low_sum & MASK32


def philox4x32_10(counter, key):
    """Philox4x32-10 of four int64 tensors of uint32 counter words and two uint32 key words."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(10):
        if round_ > 0:
            k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
        hi0, lo0 = _mulhilo32(0xD2511F53, c0)
        hi1, lo1 = _mulhilo32(0xCD9E8D57, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def random_blocks(seed: int, sample_ids: torch.Tensor, domain: int, blocks: torch.Tensor):
    """Philox words (4 tensors of shape (B, n)) of blocks `blocks` (n,) for each sample id (B,)."""
    ids = sample_ids.to(torch.int64)[:, None]
    blocks = blocks.to(torch.int64)[None, :]
    counter = (
        (blocks & MASK32).expand(ids.shape[0], -1),
        (((blocks >> 32) & 0x0FFFFFFF) | (domain << 28)).expand(ids.shape[0], -1),
        (ids & MASK32).expand(-1, blocks.shape[1]),
        ((ids >> 32) & MASK32).expand(-1, blocks.shape[1]),
    )
    return philox4x32_10(counter, (seed & MASK32, (seed >> 32) & MASK32))


def uniform_open01(bits: torch.Tensor) -> torch.Tensor:
    return (bits.to(torch.float64) + 0.5) * 2.0**-32


def _horner(r: torch.Tensor, coefficients) -> torch.Tensor:
    """coefficients[0] * r^n + ... + coefficients[n], evaluated as the kernels do."""
    out = r * coefficients[0] + coefficients[1]
    for c in coefficients[2:]:
        out = out * r + c
    return out


def normal_quantile(p: torch.Tensor) -> torch.Tensor:
    """Standard normal quantile (Wichura's AS241; its branch for sqrt(-log(.)) > 5 is unreachable from
    32-bit uniforms, see csrc/common/philox.h)."""
    q = p - 0.5
    r = 0.180625 - q * q
    centre = q * _horner(r, (2509.0809287301226727, 33430.575583588128105, 67265.770927008700853,
                             45921.953931549871457, 13731.693765509461125, 1971.5909503065514427,
                             133.14166789178437745, 3.387132872796366608)) / _horner(
        r, (5226.495278852854561, 28729.085735721942674, 39307.89580009271061, 21213.794301586595867,
            5394.1960214247511077, 687.1870074920579083, 42.313330701600911252, 1.0))
    t = torch.sqrt(-torch.log(torch.where(q < 0, p, 1.0 - p))) - 1.6
    tail = _horner(t, (7.7454501427834140764e-4, 0.0227238449892691845833, 0.24178072517745061177,
                       1.27045825245236838258, 3.64784832476320460504, 5.7694972214606914055,
                       4.6303378461565452959, 1.42343711074968357734)) / _horner(
        t, (1.05075007164441684324e-9, 5.475938084995344946e-4, 0.0151986665636164571966, 0.14810397642748007459,
            0.68976733498510000455, 1.6763848301838038494, 2.05319162663775882187, 1.0))
    return torch.where(q.abs() <= 0.425, centre, torch.where(q < 0, -tail, tail))


# --- Gaussian noise -------------------------------------------------------------------------------------------


def add_gaussian_noise(x: torch.Tensor, sigma: float, seed: int, sample_ids: torch.Tensor) -> torch.Tensor:
    checks.check_add_gaussian_noise(x, sigma, seed, sample_ids)
    batch, per_sample = x.shape[0], x[0].numel() if x.shape[0] else 0
    out_dtype = degraded_dtype(x)
    if x.numel() == 0:
        return torch.empty(x.shape, dtype=out_dtype, device=x.device)
    n_blocks = (per_sample + 3) // 4
    words = random_blocks(seed, sample_ids.cpu(), NOISE_DOMAIN, torch.arange(n_blocks))
    z = torch.stack([normal_quantile(uniform_open01(w)) for w in words], dim=-1)  # word k -> normal k
    noise = z.reshape(batch, -1)[:, :per_sample].reshape(x.shape)
    out = (x.cpu().to(torch.float64) + sigma * noise).clamp_(0, 255)
    return out.to(device=x.device, dtype=out_dtype)


# --- rain streaks ------------------------------------------------------------------------------------------------

WEIGHT_ONE = 1024  # integer weight of the streak kernel's centre line


def _lerp(range_, bits: int) -> float:
    return range_[0] + (range_[1] - range_[0]) * (bits + 0.5) * 2.0**-32


def rain_sample(ranges, seed: int, sample_id: int) -> dict:
    """Parameters of one sample's rain, drawn from its ranges (contract.RAIN_PARAMS order; alpha optional)."""
    ids = torch.tensor([sample_id])
    b0 = [int(t) for t in random_blocks(seed, ids, RAIN_PARAM_DOMAIN, torch.tensor([0]))]
    b1 = [int(t) for t in random_blocks(seed, ids, RAIN_PARAM_DOMAIN, torch.tensor([1]))]
    # block 0 draws the layer parameters, word 0 of block 1 the blend strength (csrc/common/rain.h)
    p = {name: _lerp(ranges[i], b0[i]) for i, name in enumerate(RAIN_LAYER_PARAMS)}
    p["alpha"] = _lerp(ranges[len(RAIN_LAYER_PARAMS)], b1[0]) if len(ranges) > len(RAIN_LAYER_PARAMS) else 0.0
    p["radius"] = math.ceil(p["length"] / 2 + 1.5 * p["thickness"])
    return p


def streak_kernel(p: dict) -> torch.Tensor:
    """(2R+1, 2R+1) int64 streak kernel of one sample (row = dy, column = dx, centre at R)."""
    angle = p["angle"] * (math.pi / 180)
    sin_a, cos_a = math.sin(angle), math.cos(angle)
    inv_two_var = 1.0 / (2.0 * (p["thickness"] / 2.0) ** 2)
    half, r = p["length"] / 2.0, p["radius"]
    weights = []
    for dy in range(-r, r + 1):  # Python floats and math.exp: the same IEEE operations as the kernels
        for dx in range(-r, r + 1):
            along, across = dx * sin_a + dy * cos_a, dx * cos_a - dy * sin_a
            beyond = abs(along) - half if abs(along) > half else 0.0
            weights.append(math.floor(math.exp(-(across * across + beyond * beyond) * inv_two_var) * WEIGHT_ONE + 0.5))
    return torch.tensor(weights, dtype=torch.int64).reshape(2 * r + 1, 2 * r + 1)


def streak_accumulator(ranges, seed: int, sample_id: int, height: int, width: int):
    """Exact int64 (height, width) accumulation of one sample's seeds times its streak kernel."""
    p = rain_sample(ranges, seed, sample_id)
    r = p["radius"]
    padded_h, padded_w = height + 2 * r, width + 2 * r
    index = torch.arange(padded_h * padded_w)
    words = random_blocks(seed, torch.tensor([sample_id]), RAIN_SEED_DOMAIN, index // 4)
    lane = index % 4
    bits = torch.stack([w[0] for w in words]).gather(0, lane[None])[0]
    u = uniform_open01(bits)
    values = torch.where(u >= 1.0 - p["amount"], torch.floor(256.0 * u).clamp(max=255), 0).to(torch.int64)
    seeds = values.nonzero().flatten()
    kernel = streak_kernel(p)
    dy, dx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    y = (seeds // padded_w - r)[:, None] + dy.flatten()[None]  # every (seed, tap) target
    x = (seeds % padded_w - r)[:, None] + dx.flatten()[None]
    contribution = values[seeds][:, None] * kernel.flatten()[None]
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    acc = torch.zeros(height * width, dtype=torch.int64)
    acc.index_add_(0, (y * width + x)[inside], contribution[inside])
    return acc.reshape(height, width), p


def normalise_streak(acc: torch.Tensor) -> torch.Tensor:
    lo, hi = int(acc.min()), int(acc.max())
    if hi <= lo:
        return torch.zeros(acc.shape, dtype=torch.float32)
    return ((acc - lo).to(torch.float64) * 255.0 / float(hi - lo)).float()


def rain_streaks(sample_ids, height, width, seed, *ranges) -> torch.Tensor:
    """Layers of rain_streaks(sample_ids, height, width, seed, <one range per RAIN_LAYER_PARAMS>)."""
    checks.check_rain_streaks(sample_ids, height, width, seed, *ranges)
    layers = [normalise_streak(streak_accumulator(ranges, seed, int(i), height, width)[0]) for i in sample_ids.tolist()]
    out = torch.stack(layers)[:, None] if layers else torch.empty(0, 1, height, width)
    return out.to(sample_ids.device)


def add_rain(x, sample_ids, seed, *ranges) -> torch.Tensor:
    """add_rain(x, sample_ids, seed, <one range per RAIN_PARAMS>)."""
    checks.check_add_rain(x, sample_ids, seed, *ranges)
    out = torch.empty(x.shape, dtype=degraded_dtype(x))
    src = x.cpu().to(torch.float64)
    for b, sample_id in enumerate(sample_ids.tolist()):
        acc, p = streak_accumulator(ranges, seed, sample_id, x.shape[2], x.shape[3])
        layer = normalise_streak(acc).to(torch.float64)
        out[b] = (src[b] + p["alpha"] * layer[None]).clamp(0, 255)
    return out.to(x.device)


# --- motion blur -----------------------------------------------------------------------------------------------

SPLAT_ONE = 256  # positions are rounded to 1/256 pixel, so the bilinear splat is exact integer arithmetic


def blur_sample(ranges, seed: int, sample_id: int) -> dict:
    """Parameters of one sample's camera shake, drawn from its ranges (contract.BLUR_PARAMS order): words
    0-3 of block 0, then of block 1 (csrc/common/blur.h)."""
    ids = torch.tensor([sample_id])
    words = [int(w) for block in (0, 1) for w in random_blocks(seed, ids, BLUR_PARAM_DOMAIN, torch.tensor([block]))]
    return {name: _lerp(ranges[i], words[i]) for i, name in enumerate(BLUR_PARAMS)}


def exposed_positions(exposure: float, steps: int) -> int:
    """How many of a trajectory's `steps` positions the shutter sees: the first, plus `exposure` of the rest."""
    return 1 + math.floor(exposure * (steps - 1))


def shake_trajectory(p: dict, seed: int, sample_id: int, steps: int) -> list[tuple[float, float]]:
    """The exposed positions (x, y) of one sample's camera-shake path (Boracchi & Foi 2012), starting at
    (0, 0) and moving `length / (steps - 1)` pixels per step. Python floats and math.*: the same IEEE
    operations, in the same order, as the kernels."""
    n = exposed_positions(p["exposure"], steps)
    step = p["length"] / (steps - 1)
    angle = p["angle"] * (math.pi / 180.0)
    vx, vy = math.cos(angle) * step, math.sin(angle) * step
    words = random_blocks(seed, torch.tensor([sample_id]), BLUR_PATH_DOMAIN, torch.arange(n - 1))
    jerk_u, turn_u = (uniform_open01(w[0]).tolist() for w in words[:2])
    shake_x, shake_y = (normal_quantile(uniform_open01(w[0])).tolist() for w in words[2:])
    jerk_chance = p["big_shake"] * p["anxiety"]
    x = y = 0.0
    path = [(x, y)]
    for t in range(n - 1):
        jerk_x = jerk_y = 0.0
        if jerk_u[t] < jerk_chance:  # an impulsive jerk: turn back, doubled, by pi +- 0.5 rad
            turn = math.pi + (turn_u[t] - 0.5)
            cos_t, sin_t = math.cos(turn), math.sin(turn)
            jerk_x, jerk_y = 2.0 * (vx * cos_t - vy * sin_t), 2.0 * (vx * sin_t + vy * cos_t)
        vx += jerk_x + p["anxiety"] * (p["gaussian_shake"] * shake_x[t] - p["centripetal"] * x) * step
        vy += jerk_y + p["anxiety"] * (p["gaussian_shake"] * shake_y[t] - p["centripetal"] * y) * step
        speed = math.sqrt(vx * vx + vy * vy)
        if speed > 0.0:
            vx, vy = vx / speed * step, vy / speed * step
        x, y = x + vx, y + vy
        path.append((x, y))
    return path


def splat_positions(path, size: int) -> torch.Tensor:
    """Integer (size, size) splat of a path whose bounding box is centred on the anchor size // 2: each
    position, rounded to 1/256 pixel, spreads SPLAT_ONE^2 over its four neighbours bilinearly."""
    xs, ys = [q[0] for q in path], [q[1] for q in path]
    mid_x, mid_y = (min(xs) + max(xs)) / 2.0, (min(ys) + max(ys)) / 2.0
    centre, last = float(size // 2), SPLAT_ONE * (size - 1)
    acc = [0] * (size * size)
    for x, y in path:
        qx = min(max(math.floor((x - mid_x + centre) * SPLAT_ONE + 0.5), 0), last)
        qy = min(max(math.floor((y - mid_y + centre) * SPLAT_ONE + 0.5), 0), last)
        ix, fx = divmod(qx, SPLAT_ONE)
        iy, fy = divmod(qy, SPLAT_ONE)
        for row, wy in ((iy, SPLAT_ONE - fy), (iy + 1, fy)):
            for col, wx in ((ix, SPLAT_ONE - fx), (ix + 1, fx)):
                if wx * wy:  # a zero weight may sit one past the last row or column
                    acc[row * size + col] += wx * wy
    return torch.tensor(acc, dtype=torch.int64).reshape(size, size)


def motion_blur_kernels(sample_ids, size, seed, steps, *ranges) -> torch.Tensor:
    """motion_blur_kernels(sample_ids, size, seed, steps, <one range per BLUR_PARAMS>)."""
    checks.check_motion_blur_kernels(sample_ids, size, seed, steps, *ranges)
    out = torch.empty(sample_ids.shape[0], size, size, dtype=torch.float32)
    for b, sample_id in enumerate(sample_ids.tolist()):
        path = shake_trajectory(blur_sample(ranges, seed, sample_id), seed, sample_id, steps)
        acc = splat_positions(path, size)
        out[b] = (acc.to(torch.float64) / float(len(path) * SPLAT_ONE * SPLAT_ONE)).float()
    return out.to(sample_ids.device)


def blur(x, kernels) -> torch.Tensor:
    """out[b, c, y, x] = sum over taps (i, j) of kernels[b, i, j] * x[b, c, y + kH // 2 - i, x + kW // 2 - j],
    indices mirrored with the edge repeated; taps in row-major order, zero taps skipped. The sums run in float32
    (float64 for float64 images: csrc/common/blur.h BlurAcc), the kernels rounded to that type first."""
    checks.check_blur(x, kernels)
    out = torch.empty(x.shape, dtype=degraded_dtype(x))
    height, width = x.shape[2], x.shape[3]
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    src, weights = x.cpu().to(work), kernels.cpu().to(work)
    kh, kw = weights.shape[1], weights.shape[2]
    rows = mirror_index(torch.arange(height)[:, None] + kh // 2 - torch.arange(kh)[None, :], height)  # (H, kh)
    cols = mirror_index(torch.arange(width)[:, None] + kw // 2 - torch.arange(kw)[None, :], width)  # (W, kw)
    for b in range(x.shape[0]):
        acc = torch.zeros(src.shape[1:], dtype=work)
        for i in range(kh):
            shifted_rows = src[b][:, rows[:, i]]
            for j in range(kw):
                w = float(weights[b, i, j])
                if w != 0.0:
                    acc += w * shifted_rows[:, :, cols[:, j]]
        out[b] = acc
    return out.to(x.device)


def blend_streak(x: torch.Tensor, streak: torch.Tensor, alpha) -> torch.Tensor:
    """clip(x + alpha * streak, 0, 255) for given grey layers (B or 1, 1, H, W)."""
    op = "add_rain"
    checks.check_image_batch(op, x)
    checks.check_tensor(op, "streak", streak)
    if streak.dim() != 4 or streak.shape[1] != 1:
        checks.fail("streak_layer", op=op, shape=list(streak.shape))
    if streak.shape[0] not in (1, x.shape[0]) or streak.shape[2:] != x.shape[2:]:
        checks.fail("streak_fit", op=op, shape=list(streak.shape), image_shape=list(x.shape))
    checks.check_same_device(op, "streak", streak, "x", x)
    out_dtype = degraded_dtype(x)
    work = torch.promote_types(out_dtype, torch.float32)
    return (x.to(work) + alpha * streak.to(work)).clamp_(0, 255).to(out_dtype)
