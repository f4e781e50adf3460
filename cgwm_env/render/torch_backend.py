"""Tile-based rasterizer of isotropic Gaussians in plain torch (any device; written for the CPU).

Each Gaussian is projected (EWA, with 3DGS's 0.3 px^2 low-pass) and cut off where
q = d^T Sigma^-1 d exceeds min(9, 2 ln(255 o)), i.e. beyond 3 sigma or where its alpha would fall
below 1/255. Work is organised in rows: one row per (Gaussian, 4x4 pixel tile) pair that the
cut-off ellipse can reach, sorted by tile and, within a tile, front to back by centre depth. A
tile's rows are cut into chunks of CHUNK rows; a chunk is evaluated densely on the tile's 16
pixels and composited with a cumulative product. Chunks are processed in waves (the first chunk
of every tile, then the second of the tiles still open, ...) so that a pixel stops once its
transmittance is below T_STOP, as in 3DGS, here checked between chunks; a tile closes when all
its pixels have stopped. Memory grows with the covered pixels, never with Gaussians x pixels.
The backward pass is hand-written (the standard 3DGS gradient, suffix sums by scans).
"""

from __future__ import annotations

import math

import torch

TILE = 4  # tile side, px
CHUNK = 16  # rows composited together
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_STOP = 1e-4  # a pixel whose transmittance falls below this stops (at the next chunk boundary)
EPS2D = 0.3  # px^2 added to the projected covariance, as in 3DGS and gsplat ("classic")

# Pixel k = 4 oy + ox of a tile; a row's exponent at pixel k is coef . [1, ox, oy, ox^2, ox oy, oy^2].
_OX = torch.arange(TILE * TILE) % TILE
_OY = torch.arange(TILE * TILE) // TILE
_BASIS = torch.stack((torch.ones(TILE * TILE), _OX, _OY, _OX**2, _OX * _OY, _OY**2)).double()  # (6, 16)


def render(centers, log_scales, opacity_logits, colors, camera, near: float, antialiased: bool = False) -> torch.Tensor:
    """Per-pixel sums (H, W, 5) = (sum w rgb, sum w z, alpha) of Gaussians seen by one camera.

    centers (N, 3) world, m; log_scales (N,); opacity_logits (N,); colors (N, 3); w_i is the
    compositing weight alpha_i T_i of Gaussian i at the pixel and z its centre's camera depth.
    antialiased: scale each opacity by sqrt(det Sigma2d / det(Sigma2d + EPS2D I)) (gsplat's
    "antialiased" mode, Mip-Splatting's 2D filter), so that the low-pass does not fatten Gaussians
    that project small: a scene's silhouette then keeps its size with distance.
    """
    H, W = camera.height, camera.width
    p = camera.world_to_camera(centers)
    visible = (p[:, 2] > near).nonzero()[:, 0]
    p = p[visible]
    z = p[:, 2]
    fx, fy = camera.fx, camera.fy
    tx, ty = p[:, 0] / z, p[:, 1] / z
    u, v = fx * tx + camera.cx, fy * ty + camera.cy
    # EWA projection of an isotropic covariance s^2 I: Sigma2d = s^2 J J^T + EPS2D I.
    s2 = torch.exp(2.0 * log_scales[visible]) / (z * z)
    sxx = s2 * fx * fx * (1.0 + tx * tx) + EPS2D
    syy = s2 * fy * fy * (1.0 + ty * ty) + EPS2D
    sxy = s2 * fx * fy * tx * ty
    det = sxx * syy - sxy * sxy
    ca, cb, cc = syy / det, -sxy / det, sxx / det  # conic: q = ca dx^2 + 2 cb dx dy + cc dy^2
    log_o = torch.nn.functional.logsigmoid(opacity_logits[visible])
    if antialiased:
        log_o = log_o + 0.5 * torch.log(((sxx - EPS2D) * (syy - EPS2D) - sxy * sxy) / det)
    table = torch.cat((torch.stack((u, v, ca, cb, cc, log_o)), colors[visible].T, z[None]))  # (10, N)
    with torch.no_grad():
        qmax = torch.clamp(2.0 * (log_o - math.log(ALPHA_MIN)), max=9.0)
        rows = _Rows(u, v, sxx, syy, ca, cb, cc, qmax, z, W, H)
        emin = log_o - 0.5 * qmax  # the exponent at the cut-off
    out = _Rasterize.apply(table, emin, rows)  # (ntiles, 5, 16)
    nty, ntx = rows.nty, rows.ntx
    image = out.view(nty, ntx, 5, TILE, TILE).permute(0, 3, 1, 4, 2).reshape(nty * TILE, ntx * TILE, 5)
    return image[:H, :W]


class _Rows:
    """The rows, sorted by tile and front to back within a tile: Gaussian `gid` (R,) and, per
    tile, `start` and `count` into them."""

    def __init__(self, u, v, sxx, syy, ca, cb, cc, qmax, z, W, H):
        self.ntx, self.nty = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
        ntiles = self.ntx * self.nty
        q = qmax.clamp(min=0)
        rx, ry = torch.sqrt(q * sxx), torch.sqrt(q * syy)
        # Pixel columns j with centre j + 0.5 in [u - rx, u + rx], clipped to the image; rows alike.
        j0 = torch.ceil((u - rx - 0.5).clamp(-1, W)).clamp(min=0)
        j1 = torch.floor((u + rx - 0.5).clamp(-1, W)).clamp(max=W - 1)
        i0 = torch.ceil((v - ry - 0.5).clamp(-1, H)).clamp(min=0)
        i1 = torch.floor((v + ry - 0.5).clamp(-1, H)).clamp(max=H - 1)
        ok = (qmax > 0) & (j0 <= j1) & (i0 <= i1)
        j0, i0 = torch.floor(j0 / TILE), torch.floor(i0 / TILE)
        nx = torch.floor(j1.clamp(min=0) / TILE) - j0 + 1
        count = (nx * (torch.floor(i1.clamp(min=0) / TILE) - i0 + 1) * ok).long()
        order = torch.sort(z, stable=True).indices
        count = count.index_select(0, order)
        gid = torch.repeat_interleave(order, count)
        k = torch.arange(len(gid), device=z.device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        lam = 0.5 * (ca + cc) - torch.sqrt(0.25 * (ca - cc) ** 2 + cb * cb)
        # Small integers are exact in floating point (tile ids < 2^24), so this runs in u's dtype.
        j0, i0, nx, u, v, lam, qmax = torch.stack((j0, i0, nx, u, v, lam, qmax)).index_select(1, gid)
        k = k.to(u.dtype)
        ky = torch.floor(k / nx)
        tile_x, tile_y = j0 + (k - ky * nx), i0 + ky
        # Drop tiles the cut-off ellipse misses, by q >= lambda_min |d|^2 (d: centre to the tile's pixels).
        x0, y0 = TILE * tile_x + 0.5, TILE * tile_y + 0.5
        ddx = (x0 - u).clamp(min=0) + (u - x0 - (TILE - 1)).clamp(min=0)
        ddy = (y0 - v).clamp(min=0) + (v - y0 - (TILE - 1)).clamp(min=0)
        miss = lam * (ddx * ddx + ddy * ddy) > qmax
        tile = (tile_y * self.ntx + tile_x).masked_fill_(miss, ntiles).int()  # misses sort after every tile
        tile, order = torch.sort(tile, stable=True)
        self.gid = gid.index_select(0, order)
        self.count = torch.bincount(tile, minlength=ntiles + 1)[:ntiles]
        self.start = torch.cumsum(self.count, 0) - self.count


class _Rasterize(torch.autograd.Function):
    """Per-Gaussian table (10, N) = (u, v, conic a, b, c, log opacity, r, g, b, z) -> per-tile
    sums (ntiles, 5, 16) of w (r, g, b, z, 1) over the tile's 16 pixels.

    Wave k composites chunk ranks [r_k, r_k+1) = [0, 2), [2, 4), [4, 8), ... of the tiles still
    open: a cumulative product within each chunk, chained across the wave's chunks of a tile by a
    float64 scan of their log transmittances, and across waves by the per-pixel transmittance P.
    """

    @staticmethod
    def forward(ctx, table, emin, rows):
        n, dtype, device = table.shape[1], table.dtype, table.device
        ntiles = rows.ntx * rows.nty
        # Gather table: the 10 inputs and emin; column n pads chunks (emin = inf: alpha 0).
        full = torch.cat((table, emin[None]))
        full = torch.cat((full, full.new_tensor([0.0] * 10 + [math.inf])[:, None]), dim=1)
        basis = _BASIS.to(device=device, dtype=dtype)
        tile_ids = torch.arange(ntiles, device=device)
        origin = torch.stack((tile_ids % rows.ntx, tile_ids // rows.ntx)).to(dtype) * TILE + 0.5  # first pixel centre
        nchunks = (rows.count + CHUNK - 1) // CHUNK
        end = rows.start + rows.count
        lanes = torch.arange(CHUNK, device=device)
        out = table.new_zeros(ntiles, 5, 16)
        tiles = (rows.count > 0).nonzero()[:, 0]
        P = table.new_ones(len(tiles), 16)  # per-pixel transmittance in front of the wave
        waves = []
        r0 = 0
        while len(tiles):
            r1 = max(2 * r0, 2)
            k = (nchunks.index_select(0, tiles) - r0).clamp(max=r1 - r0)  # this wave's chunks per open tile
            k_end = torch.cumsum(k, 0)
            local = torch.repeat_interleave(torch.arange(len(tiles), device=device), k)
            first = (k_end - k).index_select(0, local)  # each chunk's tile's first chunk in the wave
            last = (k_end - 1).index_select(0, local)
            ctile = tiles.index_select(0, local)
            m = len(ctile)
            idx = (rows.start.index_select(0, ctile) + (r0 + torch.arange(m, device=device) - first) * CHUNK)[:, None]
            idx = idx + lanes
            blank = idx >= end.index_select(0, ctile)[:, None]
            g = rows.gid.index_select(0, idx.view(-1).clamp_(max=len(rows.gid) - 1)).masked_fill_(blank.view(-1), n)
            vals = full.index_select(1, g).view(11, m, CHUNK)
            x0, y0 = origin.index_select(1, ctile)[:, :, None]
            dx, dy = x0 - vals[0], y0 - vals[1]
            a, b, c = vals[2], vals[3], vals[4]
            c1, c2 = -(a * dx + b * dy), -(b * dx + c * dy)
            coef = torch.stack((vals[5] + 0.5 * (c1 * dx + c2 * dy), c1, c2, -0.5 * a, -b, -0.5 * c), dim=-1)
            E = coef.view(-1, 6) @ basis  # (m * CHUNK, 16)
            alpha = E.masked_fill_(E < vals[10].reshape(-1, 1), -math.inf).exp_().clamp_(max=ALPHA_MAX)
            alpha = alpha.view(m, CHUNK, 16)
            T_after = torch.cumprod(1.0 - alpha, 1)
            log_t = torch.log(T_after[:, -1].double().clamp(min=1e-300))
            cs = torch.cumsum(log_t, 0)
            before = cs - log_t
            front = torch.exp(before - before.index_select(0, first)).to(dtype) * P.index_select(0, local)
            T = torch.cat((front[:, None], T_after[:, :-1] * front[:, None]), 1)
            w = alpha * T
            feat = vals[6:10].permute(1, 2, 0)  # (m, CHUNK, 4)
            out.index_add_(0, ctile, torch.cat((feat.transpose(1, 2) @ w, w.sum(1, keepdim=True)), 1))
            waves.append((ctile, last, g, vals, dx, dy, alpha, T, w))
            P = P * torch.exp(cs.index_select(0, k_end - 1) - before.index_select(0, k_end - k)).to(dtype)
            P.mul_(P >= T_STOP)
            more = ((P > 0).any(1) & (nchunks.index_select(0, tiles) > r1)).nonzero()[:, 0]
            tiles, P = tiles.index_select(0, more), P.index_select(0, more)
            r0 = r1
        ctx.waves = waves
        ctx.n = n
        ctx.save_for_backward(basis)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (basis,) = ctx.saved_tensors
        grad = grad_out.new_zeros(10, ctx.n + 1)
        later = grad_out.new_zeros(grad_out.shape[0], 16)  # sum of g w over the tile's later waves
        for ctile, last, g, vals, dx, dy, alpha, T, w in reversed(ctx.waves):
            G = grad_out.index_select(0, ctile)  # (m, 5, 16)
            feat = vals[6:10].permute(1, 2, 0)
            gw = feat @ G[:, :4] + G[:, 4:]  # dL/dw, (m, CHUNK, 16)
            grad_feat = (w @ G[:, :4].transpose(1, 2)).view(-1, 4)
            # dL/dalpha_i = g_i T_i - (sum_{k > i} g_k w_k) / (1 - alpha_i), within the tile.
            grad_alpha = gw * T
            cs = torch.cumsum(gw.mul_(w), 1)
            chunk_sum = cs[:, -1]
            scan = torch.cumsum(chunk_sum.double(), 0)
            behind = (scan.index_select(0, last) - scan).to(cs.dtype) + later.index_select(0, ctile) + chunk_sum
            later.index_add_(0, ctile, chunk_sum)
            grad_alpha.sub_((behind[:, None] - cs).div_(1.0 - alpha))
            grad_E = grad_alpha.mul_(alpha).mul_(alpha < ALPHA_MAX)
            g0, g1, g2, g3, g4, g5 = (grad_E.view(-1, 16) @ basis.T).T
            dx, dy = dx.reshape(-1), dy.reshape(-1)
            a, b, c = vals[2].reshape(-1), vals[3].reshape(-1), vals[4].reshape(-1)
            c1, c2 = -(a * dx + b * dy), -(b * dx + c * dy)
            rows = torch.stack(
                (
                    -(g0 * c1 - g1 * a - g2 * b),
                    -(g0 * c2 - g1 * b - g2 * c),
                    -0.5 * g0 * dx * dx - g1 * dx - 0.5 * g3,
                    -g0 * dx * dy - g1 * dy - g2 * dx - g4,
                    -0.5 * g0 * dy * dy - g2 * dy - 0.5 * g5,
                    g0,
                )
            )
            grad.index_add_(1, g, torch.cat((rows, grad_feat.T)))
        return grad[:, : ctx.n], None, None
