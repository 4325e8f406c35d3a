// Shared helpers: launch the system Chromium, open the ComfyUI frontend ready for tests, collect console
// problems, and drive the DragPoints editor with real mouse events.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Console output every page load produces that is not ours (COMFYUI.md §7): missing user files (404),
// one TypeError reading 'id' from frontend 1.32.9, and the CSP block of api.comfy.org (no outbound traffic).
// Newer frontends (1.5x) also poll /api/jobs, which the 0.3.75 backend does not have: exactly that 404 and the
// errors the frontend logs about it.
const EXPECTED_NOISE = [
  /reading 'id'/,
  /api\.comfy\.org/,
  /Content Security Policy/,
  /JobsApiError: Failed to fetch jobs: 404/,
];
const EXPECTED_404 = /\/user\.css|\/userdata[/?]|\/favicon\.ico|\/api\/jobs(\?|$)/;

export async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "dragkit-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1500, height: 950 },
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
  });
  // Generous: on a busy 2-core machine Chromium itself can take a while.
  context.setDefaultTimeout(120000);
  context.setDefaultNavigationTimeout(120000);
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** A page whose console errors, page errors and failed requests are recorded in ``problems``. */
export async function openPage(context, url) {
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    const where = msg.location()?.url ?? "";
    if (/status of 404/.test(text) && EXPECTED_404.test(where)) return;
    if (!EXPECTED_NOISE.some((re) => re.test(text))) problems.push(`console: ${text} (${where})`);
  });
  page.on("pageerror", (err) => {
    const text = String(err?.stack || err);
    if (!EXPECTED_NOISE.some((re) => re.test(text))) problems.push(`pageerror: ${text}`);
  });
  page.on("response", (r) => {
    // Our own files must always load.
    if (r.status() >= 400 && /\/extensions\/dragkit|workflow_templates\/dragkit/.test(r.url())) {
      problems.push(`http ${r.status()}: ${r.url()}`);
    }
  });
  await page.addInitScript(() => localStorage.setItem("vueNodesBannerDismissed", "true"));
  // Not "load": the frontend's hundreds of modules can take minutes on a busy machine; wait for the app.
  await page.goto(url, { waitUntil: "commit" });
  await waitForApp(page);
  return { page, problems };
}

export async function waitForApp(page) {
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas && document.querySelector("canvas"), null, { timeout: 300000 });
  // Extensions register asynchronously after the graph exists.
  await page.waitForFunction(() => window.app.extensions?.some?.((e) => e.name === "DragKit.DragPoints")
    ?? !!window.LiteGraph?.registered_node_types?.DragKitDragPoints, null, { timeout: 300000 });
}

export async function setSetting(page, id, value) {
  await page.evaluate(async ([k, v]) => {
    await window.app.extensionManager.setting.set(k, v);
  }, [id, value]);
}

/** Screen rectangle of the editor canvas of the DragPoints node ``nodeId``. */
export async function editorBox(page, nodeId) {
  const handle = await page.evaluateHandle((id) => window.app.graph.getNodeById(id).dragkitEditor.canvas, nodeId);
  const box = await handle.asElement().boundingBox();
  if (!box || box.width < 50 || box.height < 50) throw new Error(`editor canvas not visible: ${JSON.stringify(box)}`);
  return box;
}

/** Screen position of image pixel (x, y) in the editor of node ``nodeId``. */
export async function screenPoint(page, nodeId, [x, y]) {
  return page.evaluate(([id, px, py]) => {
    const ed = window.app.graph.getNodeById(id).dragkitEditor;
    const f = ed.frame();
    const r = ed.canvas.getBoundingClientRect();
    const kx = r.width / ed.canvas.clientWidth;
    const ky = r.height / ed.canvas.clientHeight;
    return [r.left + (f.x + px * f.s) * kx, r.top + (f.y + py * f.s) * ky];
  }, [nodeId, x, y]);
}
