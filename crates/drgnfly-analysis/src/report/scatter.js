// drgnfly interactive latent scatter: no libraries, no network.
// Each <div class="dfs"> names three inline blocks: data-xy (base64 little-endian float32 x,y pairs),
// data-labels (base64 little-endian uint16, optional) and data-meta (JSON: names, colors, axis labels).
// Drawing writes points into one ImageData per frame; redraws happen only on requestAnimationFrame.
// Hover uses a uniform grid over the data (counting sort), so lookups stay cheap at 10^6 points.
(function () {
  "use strict";
  var LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  function bytesOf(id) {
    var bin = atob(document.getElementById(id).textContent.replace(/\s+/g, ""));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function floats(bytes) {
    if (LE) return new Float32Array(bytes.buffer);
    var dv = new DataView(bytes.buffer), out = new Float32Array(bytes.length / 4);
    for (var i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }
  function u16s(bytes) {
    if (LE) return new Uint16Array(bytes.buffer);
    var dv = new DataView(bytes.buffer), out = new Uint16Array(bytes.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = dv.getUint16(2 * i, true);
    return out;
  }
  function rgba32(hex) {
    var v = parseInt(hex.slice(1), 16), r = (v >> 16) & 255, g = (v >> 8) & 255, b = v & 255;
    return LE ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
  }
  function niceTicks(lo, hi, n) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n))), err = (n * step) / (hi - lo);
    if (err <= 0.15) step *= 10; else if (err <= 0.35) step *= 5; else if (err <= 0.75) step *= 2;
    var out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return out;
  }
  function fmt(v) { return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : +v.toPrecision(4) + ""; }

  function Scatter(root) {
    var t0 = performance.now();
    var meta = JSON.parse(document.getElementById(root.dataset.meta).textContent);
    var xy = floats(bytesOf(root.dataset.xy)), n = xy.length >> 1;
    var labels = root.dataset.labels ? u16s(bytesOf(root.dataset.labels)) : null;
    var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
    var tip = root.querySelector(".tip"), legend = root.querySelector(".legend");
    var ncls = meta.colors.length, colors = new Uint32Array(ncls), hidden = new Uint8Array(ncls);
    for (var c = 0; c < ncls; c++) colors[c] = rgba32(meta.colors[c]);

    // Data bounds (finite points only).
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (var i = 0; i < n; i++) {
      var x = xy[2 * i], y = xy[2 * i + 1];
      if (!isFinite(x) || !isFinite(y)) continue;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!(x1 > x0)) { x0 -= 0.5; x1 += 0.5; }
    if (!(y1 > y0)) { y0 -= 0.5; y1 += 0.5; }
    var px = 0.04 * (x1 - x0), py = 0.04 * (y1 - y0);
    var home = [x0 - px, x1 + px, y0 - py, y1 + py], view = home.slice();

    // Grid index: G×G cells over the bounds, points sorted by cell (counting sort).
    var G = Math.max(16, Math.min(1024, Math.round(Math.sqrt(n / 4)))), start = new Uint32Array(G * G + 1);
    var cellOf = new Int32Array(n), gx = G / (home[1] - home[0]), gy = G / (home[3] - home[2]);
    for (i = 0; i < n; i++) {
      var cx = Math.floor((xy[2 * i] - home[0]) * gx), cy = Math.floor((xy[2 * i + 1] - home[2]) * gy);
      if (!(cx >= 0 && cx < G && cy >= 0 && cy < G)) { cellOf[i] = -1; continue; }
      cellOf[i] = cy * G + cx; start[cellOf[i] + 1]++;
    }
    for (c = 0; c < G * G; c++) start[c + 1] += start[c];
    var fill = start.slice(0, G * G), items = new Uint32Array(start[G * G]);
    for (i = 0; i < n; i++) if (cellOf[i] >= 0) items[fill[cellOf[i]]++] = i;
    cellOf = null; fill = null;

    var W = 0, H = 0, dpr = 1, M = { l: 60, r: 12, t: 10, b: 44 }, image = null, pixels = null;
    function resize() {
      dpr = window.devicePixelRatio || 1;
      W = Math.max(100, Math.round(canvas.clientWidth * dpr)); H = Math.max(100, Math.round(canvas.clientHeight * dpr));
      canvas.width = W; canvas.height = H;
      image = ctx.createImageData(W, H); pixels = new Uint32Array(image.data.buffer);
    }
    function toPx(x, y) {
      var l = M.l * dpr, r = W - M.r * dpr, t = M.t * dpr, b = H - M.b * dpr;
      return [l + (x - view[0]) / (view[1] - view[0]) * (r - l), b - (y - view[2]) / (view[3] - view[2]) * (b - t)];
    }
    function toData(sx, sy) {
      var l = M.l * dpr, r = W - M.r * dpr, t = M.t * dpr, b = H - M.b * dpr;
      return [view[0] + (sx - l) / (r - l) * (view[1] - view[0]), view[2] + (b - sy) / (b - t) * (view[3] - view[2])];
    }

    function draw() {
      var l = Math.round(M.l * dpr), r = Math.round(W - M.r * dpr), t = Math.round(M.t * dpr), b = Math.round(H - M.b * dpr);
      pixels.fill(0xffffffff);
      var size = n > 200000 ? 1 : 2, s = Math.max(1, Math.round(size * dpr));
      var ax = (r - l) / (view[1] - view[0]), ay = (b - t) / (view[3] - view[2]), bx = l - view[0] * ax, by = b + view[2] * ay;
      var def = rgba32("#1f77b4");
      for (var i = 0; i < n; i++) {
        var k = labels ? labels[i] : 0;
        if (labels && (k >= ncls || hidden[k])) continue;
        var X = (xy[2 * i] * ax + bx) | 0, Y = (by - xy[2 * i + 1] * ay) | 0;
        if (X < l || Y < t || X + s > r || Y + s > b) continue;
        var col = labels ? colors[k] : def;
        for (var dy = 0; dy < s; dy++) for (var dx = 0, o = (Y + dy) * W + X; dx < s; dx++) pixels[o + dx] = col;
      }
      ctx.putImageData(image, 0, 0);
      // Frame, ticks and labels.
      ctx.strokeStyle = "#333"; ctx.lineWidth = dpr; ctx.strokeRect(l + 0.5, t + 0.5, r - l - 1, b - t - 1);
      ctx.fillStyle = "#222"; ctx.font = 12 * dpr + "px system-ui, sans-serif";
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      niceTicks(view[0], view[1], 6).forEach(function (v) {
        var p = toPx(v, 0)[0]; ctx.fillRect(p, b, dpr, 5 * dpr); ctx.fillText(fmt(v), p, b + 7 * dpr);
      });
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      niceTicks(view[2], view[3], 6).forEach(function (v) {
        var p = toPx(0, v)[1]; ctx.fillRect(l - 5 * dpr, p, 5 * dpr, dpr); ctx.fillText(fmt(v), l - 7 * dpr, p);
      });
      ctx.font = 13 * dpr + "px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
      ctx.fillText(meta.x_label, (l + r) / 2, H - 2 * dpr);
      ctx.save(); ctx.translate(13 * dpr, (t + b) / 2); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "middle";
      ctx.fillText(meta.y_label, 0, 0); ctx.restore();
    }
    var pending = false;
    function request() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; draw(); });
    }

    // Nearest visible point within 6 css px of the cursor, through the grid.
    function pick(sx, sy) {
      var rad = 6 * dpr, a = toData(sx - rad, sy + rad), z = toData(sx + rad, sy - rad);
      var cx0 = Math.max(0, Math.floor((a[0] - home[0]) * gx)), cx1 = Math.min(G - 1, Math.floor((z[0] - home[0]) * gx));
      var cy0 = Math.max(0, Math.floor((a[1] - home[2]) * gy)), cy1 = Math.min(G - 1, Math.floor((z[1] - home[2]) * gy));
      var best = -1, bd = rad * rad;
      for (var cy = cy0; cy <= cy1; cy++) for (var cx = cx0; cx <= cx1; cx++) {
        for (var j = start[cy * G + cx], e = start[cy * G + cx + 1]; j < e; j++) {
          var i = items[j];
          if (labels && hidden[labels[i]]) continue;
          var p = toPx(xy[2 * i], xy[2 * i + 1]), d = (p[0] - sx) * (p[0] - sx) + (p[1] - sy) * (p[1] - sy);
          if (d <= bd) { bd = d; best = i; }
        }
      }
      return best;
    }

    var drag = null;
    canvas.addEventListener("pointerdown", function (e) { drag = [e.clientX, e.clientY, view.slice()]; canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointerup", function () { drag = null; });
    canvas.addEventListener("pointermove", function (e) {
      var rect = canvas.getBoundingClientRect(), sx = (e.clientX - rect.left) * dpr, sy = (e.clientY - rect.top) * dpr;
      if (drag) {
        var a = toData(0, 0), z = toData((e.clientX - drag[0]) * dpr, (e.clientY - drag[1]) * dpr);
        var dx = z[0] - a[0], dy = z[1] - a[1];
        view = [drag[2][0] - dx, drag[2][1] - dx, drag[2][2] - dy, drag[2][3] - dy];
        tip.style.display = "none"; request(); return;
      }
      var i = pick(sx, sy);
      if (i < 0) { tip.style.display = "none"; return; }
      var k = labels ? labels[i] : -1;
      tip.textContent = "particle " + i + (k >= 0 ? " · " + (meta.names[k] || "class " + k) : "") +
        " · (" + fmt(xy[2 * i]) + ", " + fmt(xy[2 * i + 1]) + ")";
      tip.style.left = sx / dpr + 12 + "px"; tip.style.top = sy / dpr + 12 + "px"; tip.style.display = "block";
    });
    canvas.addEventListener("pointerleave", function () { tip.style.display = "none"; });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = canvas.getBoundingClientRect(), c = toData((e.clientX - rect.left) * dpr, (e.clientY - rect.top) * dpr);
      var f = Math.exp(e.deltaY * 0.0015);
      view = [c[0] + (view[0] - c[0]) * f, c[0] + (view[1] - c[0]) * f, c[1] + (view[2] - c[1]) * f, c[1] + (view[3] - c[1]) * f];
      request();
    }, { passive: false });
    canvas.addEventListener("dblclick", function () { view = home.slice(); request(); });
    window.addEventListener("resize", function () { resize(); request(); });

    // Legend: one toggle per class with its count.
    if (labels && legend) {
      var counts = new Uint32Array(ncls);
      for (i = 0; i < n; i++) if (labels[i] < ncls) counts[labels[i]]++;
      for (c = 0; c < ncls; c++) (function (k) {
        var btn = document.createElement("button"), sw = document.createElement("i");
        sw.style.background = meta.colors[k]; btn.appendChild(sw);
        btn.appendChild(document.createTextNode((meta.names[k] || "class " + k) + " (" + counts[k] + ")"));
        btn.addEventListener("click", function () { hidden[k] ^= 1; btn.classList.toggle("off"); request(); });
        legend.appendChild(btn);
      })(c);
    }
    resize();
    var t1 = performance.now();
    draw();
    // Load time (decode, index, first frame) and the cost of one frame, which every pan/zoom repeats.
    root.dataset.points = n; root.dataset.drawMs = Math.round(performance.now() - t0);
    root.dataset.frameMs = Math.round(performance.now() - t1);
  }

  window.addEventListener("error", function (e) {
    document.documentElement.setAttribute("data-drgnfly-error", String(e.message));
  });
  var roots = document.querySelectorAll(".dfs");
  for (var r = 0; r < roots.length; r++) Scatter(roots[r]);
  window.__drgnfly_ok = true;
  document.documentElement.setAttribute("data-drgnfly-ok", String(roots.length));
})();
