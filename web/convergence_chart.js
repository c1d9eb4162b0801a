// Seedfinder's convergence chart: after an invert node runs, draw its residual per step (and per iteration where a
// method iterates) on the node, from the `seedfinder` ui data the node returns, with the round trip (measured, or the
// estimate where the node did not regenerate its seed), and the node's warning in red when the seed will not give
// the image back.
// Drawn from the stored report on every frame, so it follows resizing; each run replaces the report.
import { app } from "../../scripts/app.js";

const INVERT_NODE = /^Seedfinder.*Invert$/;
const CHART_HEIGHT = 150;
const MARGIN = 10;
const FLOOR = 1e-12; // exact methods report 0: plot them at the floor of the log scale
const WARNING_COLOR = "#ff6b6b";

function finiteResiduals(report) {
  return report.residuals.flat().filter((r) => r !== null && Number.isFinite(r)).map((r) => Math.max(r, FLOOR));
}

// the measured round trip where the node regenerated its seed (its round_trip widget: measure), else the estimate
function roundTripText(report) {
  if (report.round_trip_measured !== null && report.round_trip_measured !== undefined) {
    return `round trip ${formatNumber(report.round_trip_measured)} measured (+${report.round_trip_evaluations} evaluations)`;
  }
  return `round trip ≈ ${formatNumber(report.round_trip_estimate)} estimate`;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "n/a";
  if (value === 0) return "0";
  return Math.abs(value) >= 0.01 && Math.abs(value) < 1000 ? value.toPrecision(3) : value.toExponential(2);
}

function chartBox(node) {
  const top = node.computeSize()[1] + MARGIN;
  return { x: MARGIN, y: top, width: node.size[0] - 2 * MARGIN, height: node.size[1] - top - MARGIN };
}

function drawChart(ctx, node, report) {
  const box = chartBox(node);
  if (box.height < 40 || box.width < 60) return;
  const values = finiteResiduals(report);
  const low = Math.log10(Math.min(...values, 1));
  const high = Math.log10(Math.max(...values, FLOOR * 10));
  const span = Math.max(high - low, 1e-6);
  const steps = report.residuals.length;
  const plot = { x: box.x + 34, y: box.y + 18, width: box.width - 40, height: box.height - 34 };
  const toY = (r) => plot.y + plot.height * (1 - (Math.log10(Math.max(r, FLOOR)) - low) / span);

  ctx.save();
  ctx.fillStyle = "rgba(0, 0, 0, 0.35)";
  ctx.fillRect(box.x, box.y, box.width, box.height);
  ctx.strokeStyle = "#666";
  ctx.lineWidth = 1;
  ctx.strokeRect(plot.x, plot.y, plot.width, plot.height);
  ctx.font = "10px sans-serif";
  ctx.fillStyle = report.warning ? WARNING_COLOR : "#ccc";
  ctx.textAlign = "left";
  ctx.fillText(`${report.method} · ${report.evaluations} evaluations · ${roundTripText(report)}` +
    (report.warning ? " ⚠ poor" : ""), box.x + 4, box.y + 12);
  if (report.warning) {
    ctx.fillText("this seed will not give the image back: more iterations or steps, or lower cfg", plot.x + 4, plot.y + 12);
  }
  ctx.fillStyle = "#ccc";
  ctx.textAlign = "right";
  ctx.fillText(`1e${Math.round(high)}`, plot.x - 3, plot.y + 8);
  ctx.fillText(`1e${Math.round(low)}`, plot.x - 3, plot.y + plot.height);
  ctx.textAlign = "center";
  ctx.fillText("step (σ small → large)", plot.x + plot.width / 2, box.y + box.height - 3);

  // each step's iterations as a thin trace inside its column, the final residuals joined across steps
  const column = plot.width / Math.max(steps, 1);
  ctx.strokeStyle = "rgba(120, 180, 255, 0.6)";
  report.residuals.forEach((trace, step) => {
    const finite = trace.filter((r) => r !== null);
    if (finite.length < 2) return;
    ctx.beginPath();
    finite.forEach((r, i) => {
      const x = plot.x + column * (step + 0.1 + 0.8 * (i / (finite.length - 1)));
      i === 0 ? ctx.moveTo(x, toY(r)) : ctx.lineTo(x, toY(r));
    });
    ctx.stroke();
  });
  ctx.strokeStyle = "#ffb347";
  ctx.fillStyle = "#ffb347";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  report.final_residual.forEach((r, step) => {
    if (r === null) return;
    const x = plot.x + column * (step + 0.9);
    step === 0 ? ctx.moveTo(x, toY(r)) : ctx.lineTo(x, toY(r));
  });
  ctx.stroke();
  report.final_residual.forEach((r, step) => {
    if (r !== null) ctx.fillRect(plot.x + column * (step + 0.9) - 1.5, toY(r) - 1.5, 3, 3);
  });
  ctx.restore();
  node.seedfinderChart = { drawnAt: performance.now(), box, steps, points: values.length, warning: !!report.warning };
}

function ensureRoom(node) {
  const needed = node.computeSize()[1] + CHART_HEIGHT + 2 * MARGIN;
  if (node.size[1] < needed || node.size[0] < 260) node.setSize([Math.max(node.size[0], 260), Math.max(node.size[1], needed)]);
}

app.registerExtension({
  name: "seedfinder.convergenceChart",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!INVERT_NODE.test(nodeData.name)) return;

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const report = message?.seedfinder?.[0];
      if (!report) return;
      this.seedfinderReport = report;
      ensureRoom(this);
      this.setDirtyCanvas(true, true);
    };

    const onResize = nodeType.prototype.onResize;
    nodeType.prototype.onResize = function () {
      onResize?.apply(this, arguments);
      if (this.seedfinderReport) ensureRoom(this);
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      onDrawForeground?.apply(this, arguments);
      if (this.seedfinderReport && !this.flags?.collapsed) drawChart(ctx, this, this.seedfinderReport);
    };
  },
});
