// The DragPoints JSON value (version 1), exactly as drag_core/points.py parses it:
//   {"version": 1, "width": W, "height": H,
//    "points": [{"handle": [x, y], "target": [x, y]}, ...],
//    "mask": {"width": W, "height": H, "rle": [zeros, ones, zeros, ...]}}   (mask optional)
// The mask is run-length encoded row-major, alternating runs that start with a (possibly empty) run of
// zeros, so a painted region costs a few numbers per row instead of W·H values.

export const POINTS_VERSION = 1;
// The limits drag_core/points.py enforces (a workflow file is untrusted: a few bytes must not make the browser
// tab allocate gigabytes): the largest picture side, for the points and their mask, and the pairs.
export const MAX_SIDE = 8192;
export const MAX_PAIRS = 64;

function checkSize(what, width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`${what}: width and height must be positive integers`);
  }
  if (width > MAX_SIDE || height > MAX_SIDE) {
    throw new Error(`${what}: ${width}×${height} is larger than ${MAX_SIDE} pixels a side`);
  }
}

/** Run lengths of a 0/1 array, starting with a run of zeros (length 0 when the first value is 1). */
export function encodeRLE(mask) {
  const runs = [];
  let current = 0;
  let length = 0;
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i] ? 1 : 0;
    if (v === current) {
      length++;
    } else {
      runs.push(length);
      current = v;
      length = 1;
    }
  }
  runs.push(length);
  return runs;
}

/** The 0/1 Uint8Array of width·height values that the runs describe; throws on a size mismatch. */
export function decodeRLE(runs, width, height) {
  checkSize("mask", width, height);
  const total = width * height;
  if (!Array.isArray(runs) || runs.length > total + 1) throw new Error("mask: rle must be at most width·height + 1 runs");
  const out = new Uint8Array(total);
  let at = 0;
  runs.forEach((run, i) => {
    if (!Number.isInteger(run) || run < 0) throw new Error(`mask: run ${i} is not a non-negative integer`);
    if (at + run > total) throw new Error("mask: runs are longer than width·height");
    if (i % 2 === 1) out.fill(1, at, at + run);
    at += run;
  });
  if (at !== total) throw new Error(`mask: runs sum to ${at}, expected ${total}`);
  return out;
}

/**
 * Parse the widget value into {width, height, pairs: [{handle, target}], mask: Uint8Array|null}.
 * An empty string is "nothing placed yet" (null). Invalid text throws, and the editor then leaves it alone.
 */
export function parsePoints(text) {
  if (!text || !String(text).trim()) return null;
  const data = JSON.parse(text);
  if (!data || data.version !== POINTS_VERSION) throw new Error(`points: version must be ${POINTS_VERSION}`);
  const { width, height } = data;
  checkSize("points", width, height);
  if ((data.points ?? []).length > MAX_PAIRS) throw new Error(`points: more than ${MAX_PAIRS} pairs`);
  const pairs = (data.points ?? []).map((p) => ({ handle: [+p.handle[0], +p.handle[1]], target: [+p.target[0], +p.target[1]] }));
  let mask = null;
  if (data.mask) {
    // As the Python side: the mask is on the points' own pixel grid (checked before anything is decoded).
    if (data.mask.width !== width || data.mask.height !== height) {
      throw new Error(`mask: ${data.mask.width}×${data.mask.height} differs from the points' ${width}×${height}`);
    }
    mask = decodeRLE(data.mask.rle, width, height);
  }
  return { width, height, pairs, mask };
}

/** The widget value for complete pairs and a mask ("" when there is nothing at all). */
export function serializePoints({ width, height, pairs, mask }) {
  const painted = mask && mask.some((v) => v);
  if (!pairs.length && !painted) return "";
  const value = {
    version: POINTS_VERSION,
    width,
    height,
    points: pairs.map((p) => ({ handle: [...p.handle], target: [...p.target] })),
  };
  if (painted) value.mask = { width, height, rle: encodeRLE(mask) };
  return JSON.stringify(value);
}

/** Nearest-neighbour resampling of a 0/1 mask (what the Python side does for a differently sized mask). */
export function resampleMask(mask, width, height, newWidth, newHeight) {
  const out = new Uint8Array(newWidth * newHeight);
  for (let y = 0; y < newHeight; y++) {
    const sy = Math.min(height - 1, Math.floor((y * height) / newHeight));
    for (let x = 0; x < newWidth; x++) {
      const sx = Math.min(width - 1, Math.floor((x * width) / newWidth));
      out[y * newWidth + x] = mask[sy * width + sx];
    }
  }
  return out;
}
