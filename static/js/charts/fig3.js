// The paper's Fig. 3 (the chapter's Fig. 5-8) as a diagram: VGG-19, the 34-layer plain network and
// ResNet-34 side by side, one box per layer, output sizes where they change, and ResNet-34's
// shortcuts as arrows around each block (solid: identity; dashed: 1x1 projection, option B).
// Everything comes from the layer lists of GET /api/chapter (app/chapter.py from app/arch.py).

const SVG = 'http://www.w3.org/2000/svg';
const ROW = 19; // px per layer box
const BOX_H = 14;
const COL_W = 250;
const BOX_W = 150;
const TOP = 40;
const COLORS = { conv: '#dbe7f6', pool: '#eeeeee', fc: '#f6e3cf', input: '#ffffff' };

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// Box text for one layer row, as the paper writes it ("3x3 conv, 64, /2", "pool, /2", "fc 1000").
export function boxLabel(row) {
  if (row.kind === 'pool') return row.name === 'avgpool' ? 'avg pool' : row.note.includes('3x3') ? '3x3 max pool, /2' : 'pool, /2';
  if (row.kind === 'fc') return `fc ${row.channels}`;
  const k = (row.note.match(/^(\d+x\d+)/) || [, '3x3'])[1];
  const stride = /stride 2/.test(row.note) ? ', /2' : '';
  return `${k} conv, ${row.channels}${stride}`;
}

// ResNet blocks: the conv rows of each "layerX.Y" block and whether it has a projection shortcut.
export function blocksOf(rows) {
  const blocks = new Map();
  rows.forEach((r, i) => {
    const m = /^(layer\d+\.\d+)\./.exec(r.name);
    if (!m) return;
    if (!blocks.has(m[1])) blocks.set(m[1], { id: m[1], rows: [], projection: false });
    const b = blocks.get(m[1]);
    if (r.kind === 'shortcut') b.projection = true;
    else b.rows.push(i);
  });
  return [...blocks.values()];
}

// nets: the three networks of /api/chapter's vgg19_vs_resnet34 (name, layers). Returns an <svg>.
export function fig3Diagram(nets) {
  const drawn = nets.map((net) => net.layers.filter((r) => r.kind !== 'shortcut'));
  const height = TOP + ROW * (Math.max(...drawn.map((d) => d.length)) + 1) + 20;
  const width = COL_W * nets.length;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'fig3', role: 'img', 'aria-label': 'VGG-19, plain-34 and ResNet-34 layer by layer with shortcut arrows' });
  const defs = svg('defs', {});
  const marker = svg('marker', { id: 'fig3-arrow', viewBox: '0 0 8 8', refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M0 0 L8 4 L0 8 z', fill: '#333' }));
  defs.append(marker);
  root.append(defs);
  nets.forEach((net, c) => {
    const x0 = c * COL_W + 60;
    const g = svg('g', { class: 'fig3-net', 'data-net': net.name });
    g.append(svg('text', { x: x0 + BOX_W / 2, y: 16, 'text-anchor': 'middle', class: 'fig3-title' }, net.name));
    // The input, then one box per layer; index in the full row list -> y position.
    const y = new Map();
    g.append(svg('text', { x: x0 + BOX_W / 2, y: TOP - 6, 'text-anchor': 'middle', class: 'fig3-size' }, 'image, 224×224'));
    let lastSize = 224;
    let k = 0;
    net.layers.forEach((r, i) => {
      if (r.kind === 'shortcut') return;
      const top = TOP + k * ROW;
      y.set(i, top);
      k += 1;
      if (r.out_size !== lastSize && r.kind !== 'fc') {
        g.append(svg('text', { x: x0 - 6, y: top + BOX_H - 3, 'text-anchor': 'end', class: 'fig3-size' }, `${r.out_size}×${r.out_size}`));
        lastSize = r.out_size;
      }
      const box = svg('rect', { x: x0, y: top, width: BOX_W, height: BOX_H, rx: 3, fill: COLORS[r.kind] || COLORS.conv, stroke: '#7a8799', 'stroke-width': 0.8, 'data-layer': r.name });
      const title = svg('title', {}, `${r.name}: ${r.kind}, output ${r.channels}×${r.out_size}×${r.out_size}${r.note ? ` (${r.note})` : ''}`);
      box.append(title);
      g.append(box, svg('text', { x: x0 + BOX_W / 2, y: top + BOX_H - 3.5, 'text-anchor': 'middle', class: 'fig3-label' }, boxLabel(r)));
    });
    // Shortcut arrows (ResNet only: a network whose rows name blocks and whose name is not "plain").
    if (!/plain/i.test(net.name)) {
      for (const b of blocksOf(net.layers)) {
        if (!b.rows.length) continue;
        const yTop = y.get(b.rows[0]) - 2;
        const yBot = y.get(b.rows[b.rows.length - 1]) + BOX_H + 2;
        const xr = x0 + BOX_W;
        const bulge = 26;
        g.append(
          svg('path', {
            d: `M${xr} ${yTop} C ${xr + bulge} ${yTop}, ${xr + bulge} ${yBot}, ${xr + 2} ${yBot}`,
            fill: 'none', stroke: '#333', 'stroke-width': 1.2, 'stroke-dasharray': b.projection ? '4 3' : 'none',
            'marker-end': 'url(#fig3-arrow)', class: `fig3-shortcut ${b.projection ? 'projection' : 'identity'}`, 'data-block': b.id,
          }),
        );
      }
    }
    root.append(g);
  });
  return root;
}
