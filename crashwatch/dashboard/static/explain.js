// An alert's explanation drawn (docs/explanations.md), shared by the dashboard and the review page.
"use strict";

// Why it fired (the explanation topic): the most telling frame with each map cell tinted by how much withholding
// it changes the risk (red: raised it, blue: held it down), the region's box, and each frame's share as a bar.
function showExplanation(box, e) {
  const key = e ? `${e.alert_id}:${e.event}:${e.t}:${e.state}` : "";
  if (!e || box.dataset.key === key) return;
  box.dataset.key = key;
  box.dataset.state = e.state;
  if (e.state !== "ready") {
    box.replaceChildren(Object.assign(document.createElement("p"), {textContent: `not explained: ${e.reason}`}));
    return;
  }
  const canvas = document.createElement("canvas"), region = e.region;
  const image = new Image();
  image.onload = () => {
    canvas.width = image.width;
    canvas.height = image.height;
    const g = canvas.getContext("2d"), cw = image.width / region.cols, ch = image.height / region.rows;
    g.drawImage(image, 0, 0);
    const largest = Math.max(...region.cells.flat().filter((v) => v !== null).map(Math.abs), 1e-9);
    region.cells.forEach((row, r) => row.forEach((v, c) => {
      g.fillStyle = v === null ? "rgba(120, 120, 120, 0.6)"
        : v >= 0 ? `rgba(230, 40, 40, ${0.75 * v / largest})` : `rgba(40, 120, 230, ${-0.75 * v / largest})`;
      g.fillRect(c * cw, r * ch, cw, ch);
    }));
    if (region.box) {
      const [x0, y0, x1, y1] = region.box;
      g.strokeStyle = "#3fb67a";
      g.lineWidth = 2;
      g.strokeRect(x0 * image.width, y0 * image.height, (x1 - x0) * image.width, (y1 - y0) * image.height);
    }
    canvas.dataset.drawn = "true";
  };
  image.src = `data:image/jpeg;base64,${e.frame_jpeg}`;
  const largest = Math.max(...e.frames.map((f) => Math.abs(f.share)), 1e-9);
  const shares = document.createElement("div");
  shares.className = "shares";
  shares.replaceChildren(...e.frames.map((f) => Object.assign(document.createElement("div"), {
    className: f.index === e.telling ? "share telling" : "share",
    style: `height: ${Math.max(8, 100 * Math.abs(f.share) / largest)}%`,
    textContent: `${f.t.toFixed(1)} s ${f.share >= 0 ? "+" : ""}${f.share.toFixed(2)}`,
  })));
  const telling = e.frames[e.telling];
  const where = region.box ? "the green box" : region.note;
  const text = `The frame at ${telling.t.toFixed(1)} s raised the risk most; where in it: ${where} ` +
    `(${region.method} map, explained ${Math.round(e.ready_after_ms)} ms after the alert).`;
  box.replaceChildren(canvas, shares, Object.assign(document.createElement("p"), {textContent: text}));
}
