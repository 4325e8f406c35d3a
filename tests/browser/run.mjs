// node run.mjs <config.json>   (called by test_browser.py, which asserts on the results file)
//
// For each renderer (classic LiteGraph, Vue "Nodes 2.0") and each example workflow: load it with
// app.loadGraphData, record app.graphToPrompt(), then on its DragPoints node clear the shipped points and
// place pairs, move and delete points and paint a mask with real mouse events; graph undo/redo, copy/paste,
// and a page reload. Then queue workflows from the Run button (config.queue, then config.moreQueues) and wait
// for each result. Everything observed goes into the results JSON; screenshots into the output folder.
import fs from "node:fs";
import path from "node:path";
import { editorBox, launch, openPage, screenPoint, setSetting, waitForApp } from "../../scripts/browser/comfy_page.mjs";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const { url, workflows, outDir, resultsPath, queue, moreQueues = [], legacy = [] } = config;
fs.mkdirSync(outDir, { recursive: true });
const results = { renderers: {}, legacy: {}, queue: null, moreQueues: [], problems: [], timings: {}, frontend: null };
const started = Date.now();
const mark = (name) => (results.timings[name] = Math.round((Date.now() - started) / 100) / 10);
const save = () => fs.writeFileSync(resultsPath, JSON.stringify(results, null, 1));

// Where the test clicks, as fractions of the image size: two pairs, a third pair that gets deleted,
// a move of the first target, and one mask stroke.
const PLAN = {
  pairs: [[[0.25, 0.3], [0.45, 0.3]], [[0.3, 0.7], [0.3, 0.5]]],
  extra: [[0.7, 0.75], [0.8, 0.85]],
  fourth: [[0.85, 0.2], [0.9, 0.3]],
  move: [[0.45, 0.3], [0.5, 0.35]],
  stroke: [[0.2, 0.15], [0.6, 0.15]],
};

const pointsValue = (page, id) => page.evaluate((i) => app.graph.getNodeById(i).widgets.find((w) => w.name === "points").value, id);
const editorState = (page, id) => page.evaluate((i) => {
  const ed = app.graph.getNodeById(i).dragkitEditor;
  return {
    width: ed.width, height: ed.height, pairs: ed.pairs, brush: ed.brush, hasImage: !!ed.image,
    maskSum: ed.mask ? ed.mask.reduce((a, v) => a + v, 0) : 0, view: ed.view,
    result: ed.result ? { finalHandles: ed.result.finalHandles, pairs: ed.result.pairs, hasImage: !!ed.result.image, text: ed.result.text } : null,
  };
}, id);

async function clickButton(page, id, label) {
  const handle = await page.evaluateHandle(([i, l]) => app.graph.getNodeById(i).dragkitEditor.buttons[l], [id, label]);
  await handle.asElement().click();
}

async function at(page, id, state, [fx, fy]) {
  return screenPoint(page, id, [fx * state.width, fy * state.height]);
}

async function loadWorkflow(page, file) {
  const workflow = JSON.parse(fs.readFileSync(file, "utf8"));
  await page.evaluate(async ([wf, name]) => {
    app.graph.clear();
    await app.loadGraphData(wf, true, true, name);
  }, [workflow, path.basename(file)]);
  const ids = await page.evaluate(() => app.graph.nodes.filter((n) => n.type === "DragKitDragPoints").map((n) => n.id));
  if (!ids.length) throw new Error(`${file}: no DragPoints node`);
  // The editor has its picture (possibly after uploading the bundled input) and fits it.
  await page.waitForFunction((i) => app.graph.getNodeById(i).dragkitEditor?.image, ids[0], { timeout: 20000 });
  await page.evaluate((i) => {
    const node = app.graph.getNodeById(i);
    app.canvas.ds.scale = 1;
    app.canvas.centerOnNode?.(node);
    app.graph.setDirtyCanvas(true, true);
  }, ids[0]);
  await page.waitForTimeout(600);
  return ids;
}

/** Every edit through real mouse events; returns what the widget held at each step. */
async function editPoints(page, id, tag) {
  const steps = {};
  let s = await editorState(page, id);
  steps.shipped = { value: await pointsValue(page, id), state: s };
  await clickButton(page, id, "clear"); // points mode: all pairs
  await clickButton(page, id, "mask");
  await clickButton(page, id, "clear"); // mask mode: the mask
  await clickButton(page, id, "points");
  steps.cleared = await pointsValue(page, id);

  for (const [h, t] of [...PLAN.pairs, PLAN.extra]) {
    for (const p of [h, t]) {
      const [x, y] = await at(page, id, s, p);
      await page.mouse.click(x, y);
    }
  }
  steps.threePairs = JSON.parse(await pointsValue(page, id));
  // A fourth pair is selected once placed: Delete removes it (not the node), Undo brings it back.
  for (const p of PLAN.fourth) {
    const [x, y] = await at(page, id, s, p);
    await page.mouse.click(x, y);
  }
  steps.fourPairs = JSON.parse(await pointsValue(page, id)).points.length;
  await page.keyboard.press("Delete");
  steps.afterDelete = JSON.parse(await pointsValue(page, id)).points.length;
  await clickButton(page, id, "undo");
  steps.afterUndo = JSON.parse(await pointsValue(page, id)).points.length;
  const [hx, hy] = await at(page, id, s, PLAN.fourth[0]);
  await page.mouse.click(hx, hy); // a click on a point selects its pair
  await page.keyboard.press("Delete");
  steps.nodeStillThere = (await dragIds(page)).includes(id);
  steps.afterSecondDelete = JSON.parse(await pointsValue(page, id)).points.length;
  const [rx, ry] = await at(page, id, s, PLAN.extra[0]);
  await page.mouse.click(rx, ry, { button: "right" }); // removes the third pair
  const [[mx0, my0], [mx1, my1]] = [await at(page, id, s, PLAN.move[0]), await at(page, id, s, PLAN.move[1])];
  await page.mouse.move(mx0, my0);
  await page.mouse.down();
  for (let k = 1; k <= 5; k++) await page.mouse.move(mx0 + ((mx1 - mx0) * k) / 5, my0 + ((my1 - my0) * k) / 5);
  await page.mouse.up();
  steps.pointsOnly = await pointsValue(page, id);

  await clickButton(page, id, "mask");
  const [[sx0, sy0], [sx1, sy1]] = [await at(page, id, s, PLAN.stroke[0]), await at(page, id, s, PLAN.stroke[1])];
  await page.mouse.move(sx0, sy0);
  await page.mouse.down();
  for (let k = 1; k <= 12; k++) await page.mouse.move(sx0 + ((sx1 - sx0) * k) / 12, sy0 + ((sy1 - sy0) * k) / 12);
  await page.mouse.up();
  await clickButton(page, id, "points");
  steps.edited = await pointsValue(page, id);
  s = await editorState(page, id);
  steps.brush = s.brush;
  steps.size = [s.width, s.height];
  await page.screenshot({ path: path.join(outDir, `${tag}-edited.png`) });
  await page.screenshot({ path: path.join(outDir, `${tag}-editor.png`), clip: await editorBox(page, id) });

  // Graph undo/redo (the frontend's change tracker): Ctrl+Z on the canvas takes back the mask stroke.
  await page.mouse.click(8 + (await page.evaluate(() => app.canvas.canvas.getBoundingClientRect().left)), 500);
  await page.keyboard.press("Control+z");
  await page.waitForTimeout(700);
  steps.afterGraphUndo = await pointsValue(page, (await dragIds(page))[0]);
  await page.keyboard.press("Control+y");
  await page.waitForTimeout(700);
  steps.afterGraphRedo = await pointsValue(page, (await dragIds(page))[0]);
  return steps;
}

// Each LoadImage's picture and whether its file list offers it (frontend 1.5x reports an unlisted value as
// "Media input missing" right after the workflow opens).
const loadImages = (page) => page.evaluate(() => app.graph.nodes.filter((n) => n.type === "LoadImage").map((n) => {
  const w = n.widgets.find((x) => x.name === "image");
  const values = typeof w.options.values === "function" ? w.options.values() : w.options.values;
  return { value: w.value, listed: !!values?.includes(w.value) };
}));

const dragIds = (page) => page.evaluate(() => app.graph.nodes.filter((n) => n.type === "DragKitDragPoints").map((n) => n.id));

/** Copy the node with Ctrl+C and paste it with Ctrl+V: the copy carries the same points. */
async function copyPaste(page, id) {
  const title = await page.evaluate((i) => {
    const node = app.graph.getNodeById(i);
    const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + 60, node.pos[1] - 15]);
    const r = app.canvas.canvas.getBoundingClientRect();
    return [r.left + x, r.top + y];
  }, id);
  await page.mouse.click(title[0], title[1]);
  await page.keyboard.press("Control+c");
  await page.mouse.move(title[0] + 30, title[1] + 30);
  await page.keyboard.press("Control+v");
  await page.waitForTimeout(700);
  const ids = await dragIds(page);
  const values = await Promise.all(ids.map((i) => pointsValue(page, i)));
  const copies = ids.filter((i) => i !== id);
  let editorPairs = null;
  if (copies.length) editorPairs = (await editorState(page, copies[0])).pairs.length;
  // Remove the copy again so later steps see the workflow as edited.
  await page.evaluate((cs) => cs.forEach((c) => app.graph.remove(app.graph.getNodeById(c))), copies);
  return { count: ids.length, values, editorPairs };
}

async function runRenderer(page, renderer) {
  const out = {};
  await setSetting(page, "Comfy.VueNodes.Enabled", renderer === "vue");
  for (const file of workflows) {
    const name = path.basename(file, ".json");
    const tag = `${renderer}-${name}`;
    const r = { problemsBefore: [] };
    out[name] = r;
    const ids = await loadWorkflow(page, file);
    r.loadImages = await loadImages(page);
    r.vueNodes = await page.evaluate(() => document.querySelectorAll(".lg-node").length);
    r.prompt = (await page.evaluate(() => app.graphToPrompt())).output;
    r.dragPointsIds = ids;
    r.edit = await editPoints(page, ids[0], tag);
    r.maskButton = await page.evaluate((i) => app.graph.getNodeById(i).dragkitEditor.buttons.mask.textContent, ids[0]);
    r.copyPaste = await copyPaste(page, ids[0]);
    r.beforeReload = await pointsValue(page, ids[0]);
    await page.reload({ waitUntil: "commit" });
    await waitForApp(page);
    await page.waitForFunction((i) => app.graph.getNodeById(i)?.dragkitEditor?.image, ids[0], { timeout: 20000 });
    r.afterReload = { value: await pointsValue(page, ids[0]), state: await editorState(page, ids[0]) };
    await page.screenshot({ path: path.join(outDir, `${tag}-reloaded.png`) });
    mark(`${renderer}:${name}`);
    save();
  }
  return out;
}

/** The workflows saved by an earlier release (config.legacy): each loads, and its app.graphToPrompt() is recorded. */
async function runLegacy(page, renderer) {
  const out = {};
  await setSetting(page, "Comfy.VueNodes.Enabled", renderer === "vue");
  for (const file of legacy) {
    await loadWorkflow(page, file);
    out[path.basename(file, ".json")] = {
      prompt: (await page.evaluate(() => app.graphToPrompt())).output, loadImages: await loadImages(page),
    };
  }
  mark(`legacy:${renderer}`);
  return out;
}

async function runQueue(page, plan) {
  const { workflow, overrides = {}, timeoutSeconds = 600 } = plan;
  const tag = path.basename(workflow, ".json");
  await setSetting(page, "Comfy.VueNodes.Enabled", false);
  const ids = await loadWorkflow(page, workflow);
  // Test-only widget overrides (e.g. a smaller model); the toy workflow runs exactly as shipped.
  await page.evaluate((o) => {
    for (const [id, values] of Object.entries(o)) {
      const node = app.graph.getNodeById(Number(id));
      for (const [name, v] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = v;
    }
  }, overrides);
  await page.evaluate(() => {
    const api = window.comfyAPI.api.api;
    window.__dragkitEvents = [];
    for (const type of ["execution_start", "execution_success", "execution_error", "execution_interrupted"]) {
      api.addEventListener(type, (e) => window.__dragkitEvents.push({ type, detail: e.detail }));
    }
  });
  const t0 = Date.now();
  await page.locator("button:has-text('Run')").first().click();
  await page.waitForFunction(() => window.__dragkitEvents.some((e) => e.type !== "execution_start"), null, { timeout: timeoutSeconds * 1000 });
  const seconds = (Date.now() - t0) / 1000;
  // The editor switches to the result once the decoded image arrives.
  await page.waitForFunction((i) => app.graph.getNodeById(i).dragkitEditor.result?.image, ids[0], { timeout: 15000 }).catch(() => {});
  await page.waitForTimeout(500);
  const events = await page.evaluate(() => window.__dragkitEvents);
  const state = await editorState(page, ids[0]);
  // DragPoints' own plain picture (the background when the image does not come from a LoadImage).
  const runImage = await page.evaluate(async (i) => {
    const u = app.graph.getNodeById(i).dragkitRunImage;
    return u ? { url: u, status: (await fetch(u)).status } : null;
  }, ids[0]);
  await page.screenshot({ path: path.join(outDir, `queue-${tag}-result.png`) });
  await page.screenshot({ path: path.join(outDir, `queue-${tag}-editor.png`), clip: await editorBox(page, ids[0]) });
  return { workflow: path.basename(workflow), seconds, events, editor: state, runImage, dragPointsId: ids[0] };
}

/** runQueue, with a failure recorded (it is that queue test's failure; the other tests still report). */
async function queueOne(page, plan) {
  try {
    return await runQueue(page, plan);
  } catch (e) {
    await page.screenshot({ path: path.join(outDir, `queue-${path.basename(plan.workflow, ".json")}-failed.png`) }).catch(() => {});
    return { workflow: path.basename(plan.workflow), error: String(e?.stack || e) };
  }
}

const browser = await launch();
try {
  const { page, problems } = await openPage(browser.context, url);
  mark("ready");
  results.frontend = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  // Each node's help page, where the frontend's node documentation panel fetches a custom node's page:
  // /extensions/<pack>/docs/<node id>.md, <pack> from the node's python_module ("custom_nodes.<pack>").
  results.help = await page.evaluate(async () => {
    const info = await (await fetch("/object_info")).json();
    const out = {};
    for (const [id, def] of Object.entries(info)) {
      if (!id.startsWith("DragKit")) continue;
      const [root, pack] = (def.python_module ?? "").split(".");
      const r = await fetch(`/extensions/${root === "custom_nodes" ? pack : "?"}/docs/${id}.md`);
      out[id] = { status: r.status, text: r.ok ? await r.text() : null };
    }
    return out;
  });
  for (const renderer of config.renderers) {
    results.legacy[renderer] = await runLegacy(page, renderer);
    results.renderers[renderer] = await runRenderer(page, renderer);
    results.problems.push(...problems.splice(0).map((p) => `${renderer}: ${p}`));
    save();
  }
  if (queue) {
    // A failed run is the queue test's failure; the edit tests above still report on their own.
    results.queue = await queueOne(page, queue);
    results.problems.push(...problems.splice(0).map((p) => `queue: ${p}`));
    mark("queue");
  }
  for (const plan of moreQueues) {
    results.moreQueues.push(await queueOne(page, plan));
    results.problems.push(...problems.splice(0).map((p) => `queue ${path.basename(plan.workflow)}: ${p}`));
    mark(`queue:${path.basename(plan.workflow)}`);
    save();
  }
  await setSetting(page, "Comfy.VueNodes.Enabled", false);
} catch (e) {
  results.error = String(e?.stack || e);
} finally {
  save();
  await browser.close();
}
