// A risk chart, drawn by the live page (dashboard.js) and the review page (review.js).
"use strict";

// The risk from t0 to t1 (stream seconds) on a 0 to 1 scale: alert spans shaded, the threshold dashed,
// vertical lines at `marks`, the scale and the stream times at the edges.
function drawChart(canvas, points, t0, t1, threshold, marks = []) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const x = (t) => ((t - t0) / Math.max(t1 - t0, 1e-6)) * w, y = (p) => h - p * h;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "rgba(220, 60, 60, 0.25)";
  points.forEach(([t, , active], i) => {
    if (active && i + 1 < points.length) g.fillRect(x(t), 0, x(points[i + 1][0]) - x(t), h);
  });
  g.strokeStyle = "#888";
  g.setLineDash([6 * ratio, 4 * ratio]);
  g.beginPath();
  g.moveTo(0, y(threshold));
  g.lineTo(w, y(threshold));
  g.stroke();
  g.setLineDash([]);
  g.strokeStyle = "#e0a030";
  for (const t of marks.filter((m) => m !== null)) g.strokeRect(x(t), 0, 0, h);
  g.strokeStyle = "#4aa3ff";
  g.lineWidth = 2 * ratio;
  g.beginPath();
  points.forEach(([t, p], i) => (i ? g.lineTo(x(t), y(p)) : g.moveTo(x(t), y(p))));
  g.stroke();
  g.lineWidth = 1;
  g.fillStyle = "#98a2ad";
  g.font = `${11 * ratio}px system-ui, sans-serif`;
  const pad = 4 * ratio, line = 12 * ratio;
  g.fillText("1", pad, line);
  g.fillText(`threshold ${threshold.toFixed(2)}`, 4 * line, Math.min(Math.max(y(threshold) - pad, line), h - pad));
  if (t0 >= 0) g.fillText(`${t0.toFixed(1)} s`, pad, h - pad);
  const end = `${t1.toFixed(1)} s`;
  g.fillText(end, w - g.measureText(end).width - pad, h - pad);
}
