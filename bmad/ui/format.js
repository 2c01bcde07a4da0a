// Number and time formatting for people: 1.2k, 340 ms, $0.0123, 12.5%.

const UNITS = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]];

function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

function trim(text) {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

export function fmtCount(v) {
  if (!isNum(v)) return "–";
  const abs = Math.abs(v);
  for (const [size, unit] of UNITS) {
    if (abs >= size * 0.9995) return trim((v / size).toFixed(abs / size >= 100 ? 0 : 1)) + unit;
  }
  if (Number.isInteger(v)) return String(v);
  return trim(v.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : 2));
}

export function fmtMs(v) {
  if (!isNum(v)) return "–";
  const abs = Math.abs(v);
  if (abs === 0) return "0 ms";
  if (abs < 1) return trim(v.toFixed(2)) + " ms";
  if (abs < 10) return trim(v.toFixed(1)) + " ms";
  if (abs < 1000) return Math.round(v) + " ms";
  if (abs < 60000) return trim((v / 1000).toFixed(abs < 10000 ? 2 : 1)) + " s";
  return trim((v / 60000).toFixed(1)) + " min";
}

export function fmtUsd(v) {
  if (!isNum(v)) return "–";
  const abs = Math.abs(v);
  const sign = v < 0 ? "-" : "";
  if (abs === 0) return "$0";
  if (abs < 0.0001) return sign + "<$0.0001";
  if (abs < 1) return sign + "$" + abs.toFixed(4);
  if (abs < 1000) return sign + "$" + abs.toFixed(2);
  return sign + "$" + fmtCount(abs);
}

export function fmtRatio(v) {
  if (!isNum(v)) return "–";
  const pct = v * 100;
  if (pct === 0) return "0%";
  if (Math.abs(pct) < 0.1) return "<0.1%";
  return trim(pct.toFixed(1)) + "%";
}

export function fmtDuration(seconds) {
  if (!isNum(seconds)) return "–";
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

// Accepts epoch seconds, epoch milliseconds or an ISO 8601 string.
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (isNum(value)) return new Date(value < 1e11 ? value * 1000 : value);
  const d = new Date(String(value));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtTime(value) {
  const d = toDate(value);
  if (!d) return "–";
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  return sameDay ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtClock(date) {
  return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}
