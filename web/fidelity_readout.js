// Seedfinder's fidelity readout: after a Fidelity node runs, draw its PSNR / SSIM (and the VAE bound and the gap
// to it) on the node, from the `seedfinder_fidelity` ui data; each run replaces it.
import { app } from "../../scripts/app.js";

const LINE_HEIGHT = 16;
const MARGIN = 10;

app.registerExtension({
  name: "seedfinder.fidelityReadout",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "SeedfinderFidelity") return;

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const report = message?.seedfinder_fidelity?.[0];
      if (!report) return;
      this.seedfinderFidelity = report;
      const needed = this.computeSize()[1] + report.text.length * LINE_HEIGHT + 2 * MARGIN;
      if (this.size[1] < needed) this.setSize([Math.max(this.size[0], 240), needed]);
      this.setDirtyCanvas(true, true);
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      onDrawForeground?.apply(this, arguments);
      const report = this.seedfinderFidelity;
      if (!report || this.flags?.collapsed) return;
      const top = this.computeSize()[1] + MARGIN;
      ctx.save();
      ctx.font = "12px sans-serif";
      ctx.fillStyle = "#ddd";
      ctx.textAlign = "left";
      report.text.forEach((line, i) => ctx.fillText(line, MARGIN, top + (i + 1) * LINE_HEIGHT - 4));
      ctx.restore();
      this.seedfinderFidelityDrawn = { drawnAt: performance.now(), lines: report.text.length };
    };
  },
});
