// node build_examples.mjs <server url> <spec.json> <out dir> <docs images dir>   (called by build_examples.py)
// Turns each API graph into a UI-format workflow with the real frontend and pictures its editor.
import fs from "node:fs";
import path from "node:path";
import { launch, openPage, editorBox } from "./comfy_page.mjs";

const [url, specPath, outDir, docsDir] = process.argv.slice(2);
const docsShotOf = "dragdiffusion_sd15";
const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));

// Column layout by the node ids of comfy_client.toy_drag_graph (x, y, width, height; 0 = keep); a spec entry
// may bring its own.
const LAYOUT = {
  1: [20, 330, 320, 0], 2: [20, 480, 320, 360], 3: [20, 880, 320, 150],
  4: [380, 20, 330, 0], 5: [380, 420, 440, 560],
  6: [860, 20, 220, 0], 7: [860, 120, 330, 0], 8: [860, 420, 330, 0],
  9: [1230, 20, 330, 0], 10: [1230, 240, 220, 0], 11: [1230, 330, 380, 400], 12: [860, 780, 330, 330],
};

const browser = await launch();
try {
  const { page, problems } = await openPage(browser.context, url);
  for (const { name, graph, note, layout } of spec) {
    await page.evaluate(async ([g, n, text, layout]) => {
      app.graph.clear();
      await app.loadApiJson(g, `${n}.json`);
      for (const [id, [x, y, w, h]] of Object.entries(layout)) {
        const node = app.graph.getNodeById(Number(id));
        if (!node) continue;
        node.pos = [x, y];
        const [w0, h0] = node.size;
        node.setSize([w || w0, h || h0]);
      }
      // A fixed seed: "randomize" would change it after every run (and miss the LoRA cache).
      for (const node of app.graph.nodes) {
        for (const w of node.widgets ?? []) if (w.name === "control_after_generate") w.value = "fixed";
      }
      const noteNode = LiteGraph.createNode("Note");
      noteNode.pos = [20, 20];
      noteNode.size = [320, 290];
      noteNode.title = "Read me";
      noteNode.widgets[0].value = text;
      app.graph.add(noteNode);
      app.canvas.ds.offset = [30, 20];
      app.canvas.ds.scale = 0.75;
      app.graph.setDirtyCanvas(true, true);
    }, [graph, name, note, layout ?? LAYOUT]);
    await page.waitForTimeout(2500); // the editor loads its picture
    const workflow = await page.evaluate(() => app.graph.serialize());
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(workflow, null, 2) + "\n");
    // The thumbnail: the DragPoints editor with the picture, points and mask, as the user sees it.
    const box = await editorBox(page, 5);
    await page.screenshot({ path: path.join(outDir, `${name}.jpg`), type: "jpeg", quality: 85, clip: box });
    if (name === docsShotOf) {
      // The README's picture of the editor: the whole DragPoints node at 100 % zoom.
      const clip = await page.evaluate(() => {
        const node = app.graph.getNodeById(5);
        app.canvas.ds.scale = 1;
        app.canvas.centerOnNode(node);
        app.graph.setDirtyCanvas(true, true);
        const title = LiteGraph.NODE_TITLE_HEIGHT;
        const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - title]);
        const r = app.canvas.canvas.getBoundingClientRect();
        return { x: r.left + x - 6, y: r.top + y - 6, width: node.size[0] + 12, height: node.size[1] + title + 12 };
      });
      await page.waitForTimeout(800);
      await page.screenshot({ path: path.join(docsDir, "editor.png"), clip });
    }
  }
  if (problems.length) throw new Error(`console problems:\n${problems.join("\n")}`);
} finally {
  await browser.close();
}
