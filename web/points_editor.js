// The DragPoints editor: a canvas that shows the image and lets the user place handle → target pairs and
// paint the editable region. It knows nothing about ComfyUI: dragpoints.js wires it into the node.
//
// Points mode: click = handle, next click = its target; drag a point to move it; right-click a point (or
// select it and press Delete) removes its pair; Esc cancels a half-placed pair.
// Mask mode: drag paints the mask (right button or the eraser erases); the size control sets the brush
// radius in image pixels. Ctrl+Z undoes (both modes). What the mask means depends on the node that uses
// the points (setMaskMeaning): the region that may change (the optimizing drags: green, "Mask") or the
// region to move (RegionWarp: orange, "Region").

import { parsePoints, resampleMask, serializePoints } from "./points_format.js";

const HANDLE = "#e62828";
const TARGET = "#285ae6";
const TRACK = "#ffc800";
// What the painted mask means, by the nodes downstream: its button, tooltip, status word and tint.
const MASK_MEANINGS = {
  editable: { label: "Mask", title: "Paint the region that may change", word: "mask (may change)", rgba: [60, 200, 90, 110] },
  move: { label: "Region", title: "Paint the region to move: roughly around the content the handles drag (RegionWarp)", word: "region to move", rgba: [245, 150, 30, 120] },
  both: { label: "Mask/Region", title: "Paint the region: it may change (drag methods) and is what RegionWarp moves", word: "mask / region to move", rgba: [200, 180, 60, 115] },
};
const HIT_RADIUS = 9; // screen pixels within which a click grabs a point
const UNDO_LIMIT = 50;

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function button(label, title, onClick) {
  const b = el("button", { textContent: label, title, className: "dragkit-btn" });
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    onClick();
  });
  // Keep the graph canvas from treating a click on the toolbar as a node drag.
  b.addEventListener("pointerdown", (e) => e.stopPropagation());
  return b;
}

const STYLE = `
.dragkit-editor { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%; min-height: 260px;
  box-sizing: border-box; font: 12px sans-serif; color: #ddd; }
.dragkit-toolbar { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; flex: none; }
.dragkit-btn { background: #333; color: #ddd; border: 1px solid #555; border-radius: 4px; padding: 2px 6px;
  font: 12px sans-serif; cursor: pointer; }
.dragkit-btn.active { background: #2a5d8f; border-color: #4a8fd0; color: #fff; }
.dragkit-btn:disabled { opacity: 0.4; cursor: default; }
.dragkit-canvas { flex: 1 1 auto; min-height: 120px; width: 100%; background: #1b1b1b; border-radius: 4px;
  outline: none; touch-action: none; display: block; }
.dragkit-canvas:focus { box-shadow: 0 0 0 1px #4a8fd0; }
.dragkit-status { flex: none; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: #aaa; }
.dragkit-size { width: 70px; }
`;

function installStyle() {
  if (document.getElementById("dragkit-editor-style")) return;
  document.head.append(el("style", { id: "dragkit-editor-style", textContent: STYLE }));
}

export class PointsEditor {
  /** @param {(json: string) => void} onChange called with the new widget value after every edit */
  constructor(onChange) {
    installStyle();
    this.onChange = onChange;
    this.width = 0; // the image's pixel grid the points live on (0 = no image yet)
    this.height = 0;
    this.pairs = []; // [{handle: [x, y], target: [x, y]}]
    this.pending = null; // a handle waiting for its target: [x, y]
    this.mask = null; // Uint8Array(width·height) of 0/1, or null
    this.mode = "points";
    this.maskMeaning = MASK_MEANINGS.editable;
    this.erase = false;
    this.brush = 8;
    this.selected = -1; // selected pair index
    this.undoStack = [];
    this.image = null; // HTMLImageElement of the background
    this.imageUrl = null;
    this.result = null; // {image, width, height, pairs, finalHandles, text}
    this.view = "edit"; // "edit" or "result"
    this.hover = null; // image coordinates under the cursor
    this.drag = null; // what the current pointer gesture does

    this.canvas = el("canvas", { className: "dragkit-canvas", tabIndex: 0 });
    this.status = el("div", { className: "dragkit-status" });
    this.buttons = {
      points: button("Points", "Place handle → target pairs (click, then click again)", () => this.setMode("points")),
      mask: button("Mask", "Paint the region that may change", () => this.setMode("mask")),
      erase: button("Eraser", "Erase the painted mask (or paint with the right button)", () => {
        this.erase = !this.erase;
        this.refreshToolbar();
      }),
      undo: button("Undo", "Undo the last edit (Ctrl+Z)", () => this.undo()),
      clear: button("Clear", "Remove all pairs (in Mask mode: the whole mask)", () => this.clear()),
      view: button("Result", "Show the last run's result with the tracked handles", () => this.toggleView()),
    };
    this.size = el("input", { type: "range", min: 1, max: 64, value: this.brush, className: "dragkit-size", title: "Brush radius (image pixels)" });
    this.size.addEventListener("input", () => {
      this.brush = Number(this.size.value);
      this.brushSet = true;
      this.refreshToolbar();
      this.draw();
    });
    this.size.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.sizeLabel = el("span");
    const b = this.buttons;
    this.toolbar = el("div", { className: "dragkit-toolbar" },
      [b.points, b.mask, b.erase, this.size, this.sizeLabel, b.undo, b.clear, b.view]);
    // "widget-expands": the Nodes 2.0 renderer then lets the widget fill the node's height.
    this.element = el("div", { className: "dragkit-editor widget-expands" }, [this.toolbar, this.canvas, this.status]);

    this.overlay = document.createElement("canvas"); // the mask at image resolution, drawn scaled
    this.bindEvents();
    new ResizeObserver(() => this.draw()).observe(this.canvas);
    this.refreshToolbar();
  }

  // ---- data -------------------------------------------------------------------------------------

  /** Load the widget value (on creation, workflow load, paste, graph undo). Invalid text is left alone. */
  load(text) {
    let data;
    try {
      data = parsePoints(text);
    } catch (e) {
      this.setStatus(`points value not understood (${e.message}); editing will replace it`);
      return;
    }
    this.pending = null;
    this.selected = -1;
    if (!data) {
      this.pairs = [];
      this.mask = null;
    } else {
      this.width = data.width;
      this.height = data.height;
      this.pairs = data.pairs;
      this.mask = data.mask;
      // The background decides the grid: adopt it when the stored size differs from the image.
      if (this.image) this.fitToImage(this.image.naturalWidth, this.image.naturalHeight, false);
    }
    this.renderOverlay();
    this.draw();
  }

  value() {
    if (!this.width) return "";
    return serializePoints({ width: this.width, height: this.height, pairs: this.pairs, mask: this.mask });
  }

  commit() {
    this.onChange(this.value());
    this.draw();
  }

  snapshot() {
    this.undoStack.push({
      pairs: this.pairs.map((p) => ({ handle: [...p.handle], target: [...p.target] })),
      mask: this.mask ? this.mask.slice() : null,
      pending: this.pending ? [...this.pending] : null,
      width: this.width,
      height: this.height,
    });
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
  }

  undo() {
    const s = this.undoStack.pop();
    if (!s) return;
    Object.assign(this, { pairs: s.pairs, mask: s.mask, pending: s.pending, width: s.width, height: s.height });
    this.selected = -1;
    this.renderOverlay();
    this.commit();
  }

  clear() {
    if (this.mode === "mask") {
      if (!this.mask || !this.mask.some((v) => v)) return;
      this.snapshot();
      this.mask = null;
      this.renderOverlay();
    } else {
      if (!this.pairs.length && !this.pending) return;
      this.snapshot();
      this.pairs = [];
      this.pending = null;
      this.selected = -1;
    }
    this.commit();
  }

  removePair(index) {
    if (index < 0 || index >= this.pairs.length) return;
    this.snapshot();
    this.pairs.splice(index, 1);
    this.selected = -1;
    this.commit();
  }

  // ---- background and result --------------------------------------------------------------------

  /** Show the image at ``url`` (null: none known). Points and mask follow a differently sized image. */
  setBackground(url) {
    if (url === this.imageUrl) return;
    this.imageUrl = url;
    this.statusText = null;
    if (!url) {
      this.image = null;
      this.draw();
      return;
    }
    const img = new Image();
    img.onload = () => {
      if (this.imageUrl !== url) return;
      this.image = img;
      this.fitToImage(img.naturalWidth, img.naturalHeight, true);
      this.draw();
    };
    img.onerror = () => {
      if (this.imageUrl !== url) return;
      this.image = null;
      this.setStatus("the input image could not be loaded");
      this.draw();
    };
    img.src = url;
  }

  fitToImage(w, h, notify) {
    if (!this.brushSet) {
      this.brush = Math.min(64, Math.max(2, Math.round(Math.min(w, h) / 20)));
      this.size.value = this.brush;
      this.refreshToolbar();
    }
    if (w === this.width && h === this.height) return;
    const had = this.width && (this.pairs.length || this.mask);
    if (had) {
      // The same relative positions on the new image, as the DragPoints node would rescale them.
      const sx = w / this.width;
      const sy = h / this.height;
      const scale = ([x, y]) => [round1(Math.min(x * sx, w)), round1(Math.min(y * sy, h))];
      this.pairs = this.pairs.map((p) => ({ handle: scale(p.handle), target: scale(p.target) }));
      if (this.pending) this.pending = scale(this.pending);
      if (this.mask) this.mask = resampleMask(this.mask, this.width, this.height, w, h);
    }
    this.width = w;
    this.height = h;
    this.renderOverlay();
    if (had && notify) this.onChange(this.value());
  }

  /** After a run: the result picture (URL, may be null) and the tracked final handles from ui.drag. */
  setResult(result) {
    this.result = result;
    if (result?.url) {
      const img = new Image();
      img.onload = () => {
        if (this.result === result) {
          result.image = img;
          this.draw();
        }
      };
      img.src = result.url;
    }
    this.view = "result";
    this.refreshToolbar();
    this.draw();
  }

  toggleView() {
    if (!this.result) return;
    this.view = this.view === "result" ? "edit" : "result";
    this.refreshToolbar();
    this.draw();
  }

  /** "editable" (default), "move" (the points feed RegionWarp) or "both": relabels and recolours the mask. */
  setMaskMeaning(meaning) {
    const m = MASK_MEANINGS[meaning] ?? MASK_MEANINGS.editable;
    if (m === this.maskMeaning) return;
    this.maskMeaning = m;
    this.meaning = meaning;
    this.buttons.mask.textContent = m.label;
    this.buttons.mask.title = m.title;
    this.renderOverlay();
    this.draw();
  }

  setMode(mode) {
    this.mode = mode;
    this.view = "edit";
    this.pending = null;
    this.refreshToolbar();
    this.draw();
  }

  refreshToolbar() {
    const b = this.buttons;
    b.points.classList.toggle("active", this.mode === "points");
    b.mask.classList.toggle("active", this.mode === "mask");
    b.erase.classList.toggle("active", this.erase);
    b.erase.style.display = this.size.style.display = this.sizeLabel.style.display = this.mode === "mask" ? "" : "none";
    this.sizeLabel.textContent = `${this.brush}px`;
    b.view.disabled = !this.result;
    b.view.classList.toggle("active", this.view === "result");
  }

  // ---- geometry -----------------------------------------------------------------------------------

  /** Where the image sits in the canvas (CSS pixels): fitted, centred, aspect kept. */
  frame() {
    const cw = this.canvas.clientWidth;
    const ch = this.canvas.clientHeight;
    if (!this.width || !cw || !ch) return null;
    const s = Math.min(cw / this.width, ch / this.height);
    return { s, x: (cw - this.width * s) / 2, y: (ch - this.height * s) / 2 };
  }

  toImage(e) {
    const f = this.frame();
    if (!f) return null;
    const r = this.canvas.getBoundingClientRect();
    // The node may be drawn scaled (canvas zoom): map through the element's on-screen size.
    const cx = ((e.clientX - r.left) * this.canvas.clientWidth) / r.width;
    const cy = ((e.clientY - r.top) * this.canvas.clientHeight) / r.height;
    return [(cx - f.x) / f.s, (cy - f.y) / f.s];
  }

  /** The point under ``p`` (image coordinates): {pair, end: "handle"|"target"} or null. */
  hit(p) {
    const f = this.frame();
    if (!f || !p) return null;
    const radius = HIT_RADIUS / f.s;
    let best = null;
    let bestDist = radius;
    this.pairs.forEach((pair, i) => {
      for (const end of ["target", "handle"]) {
        const d = Math.hypot(pair[end][0] - p[0], pair[end][1] - p[1]);
        if (d <= bestDist) {
          best = { pair: i, end };
          bestDist = d;
        }
      }
    });
    return best;
  }

  clamp(p) {
    return [round1(Math.min(Math.max(p[0], 0), this.width)), round1(Math.min(Math.max(p[1], 0), this.height))];
  }

  // ---- interaction --------------------------------------------------------------------------------

  bindEvents() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    c.addEventListener("pointermove", (e) => this.onPointerMove(e));
    c.addEventListener("pointerup", (e) => this.onPointerUp(e));
    c.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    c.addEventListener("pointerleave", () => {
      this.hover = null;
      this.draw();
    });
    c.addEventListener("contextmenu", (e) => {
      e.preventDefault();
      e.stopPropagation();
    });
    c.addEventListener("keydown", (e) => this.onKeyDown(e));
  }

  onPointerDown(e) {
    // Our gesture, not the graph's: without this the node (or the whole canvas) would be dragged.
    e.stopPropagation();
    e.preventDefault();
    this.canvas.focus({ preventScroll: true });
    const p = this.toImage(e);
    if (!p || !this.width || !this.image) return;
    if (this.view === "result") {
      this.view = "edit"; // a click on the result goes back to editing
      this.refreshToolbar();
      this.draw();
      return;
    }
    this.canvas.setPointerCapture(e.pointerId);
    if (this.mode === "mask") {
      this.snapshot();
      this.drag = { kind: "paint", erase: this.erase || e.button === 2, last: p };
      this.paint(p, p, this.drag.erase);
      return;
    }
    const hit = this.hit(p);
    if (e.button === 2) {
      if (hit) this.removePair(hit.pair);
      else if (this.pending) {
        this.pending = null;
        this.draw();
      }
      return;
    }
    if (e.button !== 0) return;
    if (hit) {
      this.snapshot();
      this.selected = hit.pair;
      this.drag = { kind: "move", ...hit, moved: false };
      this.draw();
      return;
    }
    const q = this.clamp(p);
    if (!this.pending) {
      this.pending = q;
      this.selected = -1;
    } else if (q[0] !== this.pending[0] || q[1] !== this.pending[1]) {
      this.snapshot();
      this.pairs.push({ handle: this.pending, target: q });
      this.pending = null;
      this.selected = this.pairs.length - 1;
      this.commit();
      return;
    }
    this.draw();
  }

  onPointerMove(e) {
    const p = this.toImage(e);
    this.hover = p;
    const d = this.drag;
    if (d?.kind === "paint") {
      e.stopPropagation();
      this.paint(d.last, p, d.erase);
      d.last = p;
    } else if (d?.kind === "move") {
      e.stopPropagation();
      const q = this.clamp(p);
      const pair = this.pairs[d.pair];
      const other = d.end === "handle" ? pair.target : pair.handle;
      if (q[0] !== other[0] || q[1] !== other[1]) {
        pair[d.end] = q;
        d.moved = true;
      }
    }
    this.draw();
  }

  onPointerUp(e) {
    const d = this.drag;
    this.drag = null;
    if (this.canvas.hasPointerCapture?.(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (!d) return;
    if (d.kind === "paint") this.commit();
    else if (d.kind === "move") {
      if (d.moved) this.commit();
      else this.undoStack.pop(); // a plain click selects; nothing to undo
    }
  }

  onKeyDown(e) {
    let handled = true;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") this.undo();
    else if (e.key === "Delete" || e.key === "Backspace") {
      if (this.pending) this.pending = null;
      else if (this.selected >= 0) this.removePair(this.selected);
      this.draw();
    } else if (e.key === "Escape") {
      this.pending = null;
      this.draw();
    } else if (e.key === "m" || e.key === "M") this.setMode(this.mode === "mask" ? "points" : "mask");
    else handled = false;
    if (handled) {
      // Keep the graph from deleting the node or undoing a graph edit.
      e.preventDefault();
      e.stopPropagation();
    }
  }

  /** Stamp brush discs along the segment a → b (image coordinates) into the mask. */
  paint(a, b, erase) {
    if (!this.mask) this.mask = new Uint8Array(this.width * this.height);
    const r = this.brush;
    const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(1, r / 2)));
    const value = erase ? 0 : 1;
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (let k = 0; k <= steps; k++) {
      // Pixel (col j, row i) has its centre at (j + 0.5, i + 0.5) in the editor's coordinates.
      const cx = a[0] + ((b[0] - a[0]) * k) / steps;
      const cy = a[1] + ((b[1] - a[1]) * k) / steps;
      const ya = Math.max(0, Math.floor(cy - r));
      const yb = Math.min(this.height - 1, Math.ceil(cy + r));
      const xa = Math.max(0, Math.floor(cx - r));
      const xb = Math.min(this.width - 1, Math.ceil(cx + r));
      for (let y = ya; y <= yb; y++) {
        for (let x = xa; x <= xb; x++) {
          if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r) this.mask[y * this.width + x] = value;
        }
      }
      x0 = Math.min(x0, xa);
      y0 = Math.min(y0, ya);
      x1 = Math.max(x1, xb);
      y1 = Math.max(y1, yb);
    }
    if (x1 >= x0 && y1 >= y0) this.renderOverlay(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }

  // ---- drawing ------------------------------------------------------------------------------------

  /** Refresh the overlay canvas (the mask tinted) in the given image-pixel rectangle (default: all). */
  renderOverlay(x = 0, y = 0, w = this.width, h = this.height) {
    if (!this.width) return;
    const o = this.overlay;
    if (o.width !== this.width || o.height !== this.height) {
      o.width = this.width;
      o.height = this.height;
      x = 0;
      y = 0;
      w = this.width;
      h = this.height;
    }
    const ctx = o.getContext("2d");
    if (!this.mask) {
      ctx.clearRect(0, 0, o.width, o.height);
      return;
    }
    const data = ctx.createImageData(w, h);
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) {
        if (this.mask[(y + j) * this.width + x + i]) data.data.set(this.maskMeaning.rgba, (j * w + i) * 4);
      }
    }
    ctx.putImageData(data, x, y);
  }

  setStatus(text) {
    this.statusText = text;
    this.draw();
  }

  draw() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.paintCanvas();
    });
  }

  paintCanvas() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const cw = c.clientWidth;
    const ch = c.clientHeight;
    if (!cw || !ch) return;
    if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) {
      c.width = Math.round(cw * dpr);
      c.height = Math.round(ch * dpr);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    const f = this.frame();
    const showResult = this.view === "result" && this.result;
    if (!f || (!this.image && !showResult)) {
      ctx.fillStyle = "#888";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("Connect a Load Image (or run once) to see the image", cw / 2, ch / 2);
      this.updateStatus();
      return;
    }
    ctx.save();
    ctx.translate(f.x, f.y);
    ctx.scale(f.s, f.s);
    ctx.imageSmoothingEnabled = f.s < 1;
    const picture = showResult ? this.result.image : this.image;
    if (picture) ctx.drawImage(picture, 0, 0, this.width, this.height);
    if (!showResult) ctx.drawImage(this.overlay, 0, 0, this.width, this.height);
    ctx.restore();
    const at = ([x, y]) => [f.x + x * f.s, f.y + y * f.s];
    if (showResult) this.drawResult(ctx, at);
    else this.drawPairs(ctx, at);
    if (!showResult && this.mode === "mask" && this.hover) {
      const [hx, hy] = at(this.hover);
      ctx.strokeStyle = this.erase ? "#f88" : "#fff";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.arc(hx, hy, this.brush * f.s, 0, 2 * Math.PI);
      ctx.stroke();
    }
    this.updateStatus();
  }

  drawPairs(ctx, at) {
    this.pairs.forEach((pair, i) => {
      const h = at(pair.handle);
      const t = at(pair.target);
      arrow(ctx, h, t, i === this.selected ? "#fff" : "rgba(255,255,255,0.85)");
      dot(ctx, h, HANDLE, i === this.selected);
      dot(ctx, t, TARGET, i === this.selected);
      label(ctx, h, String(i + 1));
    });
    if (this.pending) {
      const h = at(this.pending);
      if (this.hover && this.mode === "points") {
        ctx.setLineDash([4, 4]);
        arrow(ctx, h, at(this.clamp(this.hover)), "rgba(255,255,255,0.6)");
        ctx.setLineDash([]);
      }
      dot(ctx, h, HANDLE, true);
      label(ctx, h, String(this.pairs.length + 1));
    }
  }

  drawResult(ctx, at) {
    const r = this.result;
    const sx = this.width / r.width;
    const sy = this.height / r.height;
    const scale = ([x, y]) => at([x * sx, y * sy]);
    r.pairs.forEach((pair, i) => {
      const h = scale(pair.handle);
      const t = scale(pair.target);
      const final = r.finalHandles[i];
      dot(ctx, h, HANDLE, false, 3);
      dot(ctx, t, TARGET, false);
      if (final) {
        const fh = scale(final);
        ctx.setLineDash([4, 3]);
        arrow(ctx, h, fh, TRACK);
        ctx.setLineDash([]);
        ctx.strokeStyle = TRACK;
        ctx.lineWidth = 2.5;
        ctx.beginPath();
        ctx.arc(fh[0], fh[1], 7, 0, 2 * Math.PI);
        ctx.stroke();
      }
      label(ctx, t, String(i + 1));
    });
  }

  updateStatus() {
    let text;
    if (this.view === "result" && this.result) {
      text = this.result.text;
    } else {
      const where = this.hover && this.width
        ? `x ${Math.round(this.clamp(this.hover)[0])}, y ${Math.round(this.clamp(this.hover)[1])}` : "";
      const what = this.mode === "mask"
        ? `${this.maskMeaning.word}: ${this.erase ? "erasing" : "painting"} (right button erases)`
        : this.pending ? "click the target" : "click a handle";
      const size = this.width ? `${this.width}×${this.height}` : "no image";
      text = [size, `${this.pairs.length} pair${this.pairs.length === 1 ? "" : "s"}`, what, where]
        .filter(Boolean).join(" · ");
    }
    if (this.statusText) text = `${this.statusText} · ${text}`;
    this.status.textContent = text;
  }
}

function round1(v) {
  return Math.round(v * 10) / 10;
}

function dot(ctx, [x, y], colour, selected, radius = 5) {
  ctx.fillStyle = colour;
  ctx.strokeStyle = selected ? "#ffe94a" : "#fff";
  ctx.lineWidth = selected ? 2.5 : 1.5;
  ctx.beginPath();
  ctx.arc(x, y, radius, 0, 2 * Math.PI);
  ctx.fill();
  ctx.stroke();
}

function arrow(ctx, [x0, y0], [x1, y1], colour) {
  const len = Math.hypot(x1 - x0, y1 - y0);
  // A dark outline keeps the arrow visible on light pictures.
  ctx.strokeStyle = "rgba(0,0,0,0.55)";
  ctx.lineWidth = 4;
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
  if (len < 12) return;
  const ux = (x1 - x0) / len;
  const uy = (y1 - y0) / len;
  const bx = x1 - ux * 11;
  const by = y1 - uy * 11;
  ctx.setLineDash([]);
  ctx.beginPath();
  ctx.moveTo(x1 - ux * 5, y1 - uy * 5);
  ctx.lineTo(bx - uy * 5, by + ux * 5);
  ctx.lineTo(bx + uy * 5, by - ux * 5);
  ctx.closePath();
  ctx.strokeStyle = "rgba(0,0,0,0.55)";
  ctx.lineWidth = 1.5;
  ctx.stroke();
  ctx.fill();
}

function label(ctx, [x, y], text) {
  ctx.font = "bold 12px sans-serif";
  ctx.textAlign = "left";
  ctx.lineWidth = 3;
  ctx.strokeStyle = "#000";
  ctx.strokeText(text, x + 7, y - 7);
  ctx.fillStyle = "#fff";
  ctx.fillText(text, x + 7, y - 7);
}
