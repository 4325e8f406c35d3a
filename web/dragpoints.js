// Wires the points editor into ComfyUI's DragKitDragPoints node.
//
// The node's `points` STRING widget stays the single source of truth (it is what workflows save, what
// copy/paste and graph undo restore, and what the prompt sends); it is hidden, and the editor, a
// non-serialized DOM widget, reads and writes it.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { PointsEditor } from "./points_editor.js";

const NODE = "DragKitDragPoints";
// Nodes whose "executed" event carries ui.drag (final handles): the editor then shows the result.
const OPTIMIZERS = new Set(["DragKitMotionSupervisionOptimize", "DragKitBottleneckOptimize", "DragKitAlternatingDragDenoise", "DragKitRegionWarp"]);
// Nodes that read the painted mask as the region to move; every other consumer reads it as "may change".
const MOVERS = new Set(["DragKitRegionWarp"]);
const EDITOR_MIN_HEIGHT = 260;
const PACK = new URL(import.meta.url).pathname.split("/")[2]; // /extensions/<pack>/dragpoints.js
// Input pictures of the example workflows, uploaded into ComfyUI's input folder when a loaded workflow
// needs them and they are missing (they ship in example_workflows/, served by ComfyUI).
const BUNDLED_INPUTS = ["dragkit_demo_input.png", "dragkit_sd15_input.png", "dragkit_sdxl_input.png"];

function viewUrl({ filename, subfolder = "", type = "output" }) {
  const q = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${q}${app.getPreviewFormatParam?.() ?? ""}`);
}

/** "sub/name.png [output]" (a LoadImage value) → the /view parameters. */
function parseImageValue(value) {
  let type = "input";
  let name = String(value);
  const m = name.match(/^(.*) \[(input|output|temp)\]$/);
  if (m) {
    name = m[1];
    type = m[2];
  }
  const slash = name.lastIndexOf("/");
  return { filename: name.slice(slash + 1), subfolder: slash >= 0 ? name.slice(0, slash) : "", type };
}

function getLink(graph, id) {
  if (id == null || !graph?.links) return null;
  return graph.links.get?.(id) ?? graph.links[id] ?? null;
}

/** The node feeding ``node``'s input ``name`` (through reroutes), or null. */
function upstream(node, name) {
  let current = node;
  let slot = node.inputs?.findIndex((i) => i.name === name);
  for (let hops = 0; hops < 16 && current?.graph && slot >= 0; hops++) {
    const link = getLink(current.graph, current.inputs[slot]?.link);
    if (!link) return null;
    const source = current.graph.getNodeById(link.origin_id);
    if (!source) return null;
    if (source.type !== "Reroute") return source;
    current = source;
    slot = 0;
  }
  return null;
}

/** The upstream image's URL if it is known before running (a LoadImage-like node with an image widget). */
function sourceImageUrl(node) {
  const source = upstream(node, "image");
  const widget = source?.widgets?.find((w) => w.name === "image" && typeof w.value === "string");
  if (!widget || !widget.value) return null;
  return viewUrl(parseImageValue(widget.value));
}

/** Nodes reachable downstream of ``node`` (following every output unless ``slots`` limits the first hop). */
function downstream(node, slots = null) {
  const seen = new Set();
  const queue = [[node, slots]];
  while (queue.length) {
    const [n, only] = queue.shift();
    if (!n.graph) continue;
    (n.outputs ?? []).forEach((output, slot) => {
      if (only && !only.includes(slot)) return;
      for (const id of output.links ?? []) {
        const link = getLink(n.graph, id);
        const next = link && n.graph.getNodeById(link.target_id);
        if (next && !seen.has(next.id)) {
          seen.add(next.id);
          queue.push([next, null]);
        }
      }
    });
  }
  return seen;
}

/** The nodes that read ``node``'s output ``slot`` (through reroutes). */
function readers(node, slot = 0, hops = 0) {
  const out = [];
  for (const id of node.outputs?.[slot]?.links ?? []) {
    const link = getLink(node.graph, id);
    const next = link && node.graph.getNodeById(link.target_id);
    if (!next) continue;
    if (next.type === "Reroute" && hops < 16) out.push(...readers(next, 0, hops + 1));
    else out.push(next);
  }
  return out;
}

/** What the DragPoints node's painted mask means to the nodes its points feed. */
function maskMeaning(node) {
  const users = readers(node);
  const moves = users.some((n) => MOVERS.has(n.type));
  const edits = users.some((n) => !MOVERS.has(n.type));
  return moves && edits ? "both" : moves ? "move" : "editable";
}

function setupEditor(node) {
  const pointsWidget = node.widgets?.find((w) => w.name === "points");
  if (!pointsWidget || node.dragkitEditor) return;
  // Hidden in both renderers: the classic canvas checks .hidden, Nodes 2.0 checks options.hidden.
  pointsWidget.hidden = true;
  pointsWidget.options = { ...pointsWidget.options, hidden: true };
  if (pointsWidget.element) pointsWidget.element.style.display = "none";
  pointsWidget.computeSize = () => [0, -4];

  let written = pointsWidget.value;
  const editor = new PointsEditor((json) => {
    written = json;
    pointsWidget.value = json;
    node.graph?.setDirtyCanvas?.(true, false);
  });
  node.dragkitEditor = editor;
  // Any outside change of the value (workflow load, paste, graph undo, API-format load) reaches the editor.
  const callback = pointsWidget.callback;
  pointsWidget.callback = function (value, ...rest) {
    const r = callback?.apply(this, [value, ...rest]);
    if (value !== written) {
      written = value;
      editor.load(value);
    }
    return r;
  };

  const widget = node.addDOMWidget("editor", "dragkit_points_editor", editor.element, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => EDITOR_MIN_HEIGHT,
  });
  widget.serializeValue = () => undefined;
  editor.load(pointsWidget.value);

  // The background: the upstream LoadImage's picture right away; otherwise the image this node sent
  // back after a run. Checked periodically, as the user may pick another file at any time; so is what the
  // painted mask means (the nodes the points feed can change at any time too).
  const refresh = () => {
    const url = sourceImageUrl(node) ?? node.dragkitRunImage ?? null;
    editor.setBackground(url);
    editor.setMaskMeaning(maskMeaning(node));
  };
  refresh();
  const timer = setInterval(refresh, 700);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    clearInterval(timer);
    return onRemoved?.apply(this, arguments);
  };
  node.dragkitRefresh = refresh;

  if (node.size[0] < 360 || node.size[1] < 420) node.setSize([Math.max(node.size[0], 360), Math.max(node.size[1], 420)]);
}

/** After a run: DragPoints' own image, and the optimize node's tracked handles on the edited image. */
function onExecuted({ detail }) {
  const graph = app.graph;
  if (!graph || !detail?.output) return;
  const id = detail.display_node ?? detail.node;
  const node = graph.getNodeById(id);
  if (!node) return;
  const out = detail.output;
  if (node.type === NODE && node.dragkitEditor) {
    const background = out.dragkit_background?.[0];
    if (background) {
      node.dragkitRunImage = viewUrl(background);
      node.dragkitRefresh?.();
    }
    return;
  }
  for (const points of graph.nodes.filter((n) => n.type === NODE && n.dragkitEditor)) {
    const editor = points.dragkitEditor;
    const below = downstream(points);
    if (!below.has(node.id)) continue;
    if (OPTIMIZERS.has(node.type) && out.drag?.[0]) {
      const d = out.drag[0];
      const dist = d.final_distance_px == null ? "" : `, mean handle→target ${d.final_distance_px.toFixed(1)} px`;
      const what = d.method === "region_warp"
        ? `after the warp: the region pasted at the targets, ${d.inpaint_pixels} px to inpaint (hatched) · yellow = where the handles went`
        : `after the drag: ${d.iterations} iterations${dist}${d.reached ? " (reached)" : ""} · yellow = tracked handles`;
      points.dragkitResult = {
        optimizer: node.id,
        method: d.method ?? "drag",
        width: d.width,
        height: d.height,
        pairs: d.pairs,
        finalHandles: d.final_handles,
        url: out.images?.[0] ? viewUrl(out.images[0]) : null,
        text: what,
      };
      editor.setResult(points.dragkitResult);
    } else if (points.dragkitResult && out.images?.[0] && isEditedImage(points.dragkitResult.optimizer, node)) {
      // The edited picture (downstream of the optimizer's state, not its preview) replaces the preview.
      const text = points.dragkitResult.method === "region_warp"
        ? "result of the warp + inpaint · yellow = where the handles went"
        : points.dragkitResult.text.replace("after the drag", "result");
      editor.setResult({ ...points.dragkitResult, url: viewUrl(out.images[0]), text });
    }
  }
}

function isEditedImage(optimizerId, node) {
  const optimizer = app.graph.getNodeById(optimizerId);
  return optimizer ? downstream(optimizer, [0]).has(node.id) : false;
}

/**
 * Upload an example workflow's input picture when a workflow about to load asks for it and the server
 * lacks it. Runs before the graph is configured, so LoadImage never asks for a missing file.
 */
async function provideBundledInputs(graphData) {
  const wanted = new Set();
  for (const node of graphData?.nodes ?? []) {
    for (const v of Array.isArray(node.widgets_values) ? node.widgets_values : []) {
      if (BUNDLED_INPUTS.includes(v)) wanted.add(v);
    }
  }
  if (!wanted.size) return;
  try {
    // LoadImage's definition lists the input folder as it is now.
    const info = await (await api.fetchApi("/object_info/LoadImage")).json();
    const present = info.LoadImage?.input?.required?.image?.[0] ?? [];
    let uploaded = false;
    for (const name of wanted) {
      if (present.includes(name)) continue;
      const picture = await fetch(api.apiURL(`/workflow_templates/${PACK}/${name}`));
      if (!picture.ok) continue;
      const body = new FormData();
      body.append("image", new File([await picture.blob()], name, { type: "image/png" }));
      body.append("overwrite", "false");
      uploaded = (await api.fetchApi("/upload/image", { method: "POST", body })).ok || uploaded;
    }
    // LoadImage offers the files listed in the node definitions the frontend loaded at start, and newer frontends
    // (1.5x) report a value missing from that list as "Media input missing" right after the workflow opens:
    // reload the definitions so the uploaded pictures are listed (older frontends: refreshComboInNodes).
    if (uploaded) await (app.reloadNodeDefs ? app.reloadNodeDefs() : app.refreshComboInNodes?.());
  } catch (e) {
    console.warn("DragKit: could not provide the example pictures", e);
  }
}

app.registerExtension({
  name: "DragKit.DragPoints",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      setupEditor(this);
      return r;
    };
    // The editor shows the image and points; the generic image preview below it would repeat them.
    nodeType.prototype.onDrawBackground = function () {};
    // A new or removed link can change what the painted mask means (RegionWarp reads it as the region to move).
    const connections = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const r = connections?.apply(this, arguments);
      this.dragkitRefresh?.();
      return r;
    };
  },
  setup() {
    api.addEventListener("executed", onExecuted);
  },
  async beforeConfigureGraph(graphData) {
    await provideBundledInputs(graphData);
  },
});
