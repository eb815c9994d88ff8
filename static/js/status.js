// Progress (spinner, what is running, elapsed time) and readable error messages.

const active = new Map(); // id -> {label, t0}
let nextId = 1;
let lastMessage = '';
let ticker = null;

const statusEl = () => document.getElementById('status');
const errorEl = () => document.getElementById('error');

function paint() {
  const el = statusEl();
  if (!el) return;
  if (!active.size) {
    clearInterval(ticker);
    ticker = null;
    el.classList.remove('busy');
    el.querySelector('.status-text').textContent = lastMessage;
    return;
  }
  const tasks = [...active.values()];
  const now = performance.now();
  el.classList.add('busy');
  el.querySelector('.status-text').textContent = tasks.map((t) => `${t.label} ${((now - t.t0) / 1000).toFixed(1)} s`).join(' · ');
}

// Start a task; returns finish(message?) which stops its timer and shows the message.
export function startTask(label) {
  const id = nextId++;
  active.set(id, { label, t0: performance.now() });
  if (!ticker) ticker = setInterval(paint, 100);
  paint();
  return (message) => {
    active.delete(id);
    if (message) lastMessage = message;
    paint();
  };
}

// Every page has one #error box (on the Explore page with a .error-text line and a dismiss button).
export function showError(err) {
  const el = errorEl();
  if (!el) return;
  const message = err instanceof Error ? err.message : String(err);
  (el.querySelector('.error-text') || el).textContent = message;
  el.hidden = false;
  console.warn('resviz:', err);
}

export function clearError() {
  const el = errorEl();
  if (el) el.hidden = true;
}
