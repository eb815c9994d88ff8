// The architecture strip: every block in order, stages coloured, shortcuts drawn as in the chapter's
// figures (solid: identity; dashed: projection / zero-padding), with a switch on each shortcut.
import { stageColor } from './charts/theme.js';
import { el } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const IMAGENET_STAGE = ['conv1', 'conv2_x', 'conv3_x', 'conv4_x', 'conv5_x'];

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}


// One block as a tiny diagram: x -> [F] -> (+) -> out, with the shortcut arcing over F to the sum.
function blockIcon(block) {
  const svg = svgEl('svg', { viewBox: '0 0 64 52', class: 'blk-icon', 'aria-hidden': 'true' });
  const solid = block.shortcut_kind === 'identity';
  svg.append(
    svgEl('path', { d: 'M2 38 H14', class: 'wire' }),
    svgEl('rect', { x: 14, y: 28, width: 28, height: 20, rx: 3, class: 'fbox' }),
    svgEl('path', { d: 'M42 38 H49', class: 'wire' }),
    svgEl('circle', { cx: 54, cy: 38, r: 5, class: 'sum' }),
    svgEl('path', { d: 'M51 38 H57 M54 35 V41', class: 'plus' }),
    svgEl('path', { d: 'M59 38 H64', class: 'wire' }),
    svgEl('path', { d: 'M6 38 C 6 6, 54 6, 54 33', class: `shortcut ${solid ? 'solid' : 'dashed'}` }),
    svgEl('path', { d: 'M26 9 L34 17 M34 9 L26 17', class: 'cut' }),
  );
  const label = svgEl('text', { x: 28, y: 42, 'text-anchor': 'middle', class: 'flabel' });
  label.textContent = 'F(x)';
  svg.append(label);
  if (!solid) {
    const kind = svgEl('text', { x: 30, y: 24, 'text-anchor': 'middle', class: 'kindlabel' });
    kind.textContent = block.shortcut_kind === 'A' ? 'pad' : '1×1';
    svg.append(kind);
  }
  return svg;
}

function stageTitle(manifest, stage, firstBlock) {
  const tap = manifest.taps.find((t) => t.id === firstBlock.output);
  const shape = tap ? `${tap.shape[0]} ch, ${tap.shape[1]}×${tap.shape[2]}` : '';
  const name = manifest.family === 'imagenet' ? `${IMAGENET_STAGE[stage]} · ` : '';
  return `stage ${stage} · ${name}${shape}`;
}

// Build the strip for a manifest. handlers: {select(blockId), gate(index, on)}
export function buildStrip(container, manifest, handlers) {
  container.replaceChildren();
  const stem = el('div', { class: 'stem-card', title: 'stem: conv1, BN, ReLU (and max pool on ImageNet)' }, [
    el('span', { class: 'card-title', text: 'stem' }),
    el('span', { class: 'card-sub', text: manifest.family === 'imagenet' ? '7×7 conv, pool' : '3×3 conv' }),
  ]);
  container.append(stem);
  const byStage = new Map();
  manifest.blocks.forEach((b, i) => {
    if (!byStage.has(b.stage)) byStage.set(b.stage, []);
    byStage.get(b.stage).push({ ...b, gateIndex: i });
  });
  for (const [stage, blocks] of byStage) {
    const group = el('div', { class: 'stage', style: `--stage-color: ${stageColor(stage)}` });
    group.append(el('div', { class: 'stage-title', text: stageTitle(manifest, stage, blocks[0]) }));
    const row = el('div', { class: 'stage-blocks' });
    for (const b of blocks) {
      const input = el('input', { type: 'checkbox', 'data-gate': String(b.gateIndex), 'aria-label': `shortcut of ${b.id}` });
      input.checked = true;
      input.addEventListener('change', () => handlers.gate(b.gateIndex, input.checked));
      const sw = el('label', { class: 'switch', title: `shortcut of ${b.id} on/off` }, [input, el('span', { class: 'slider' })]);
      sw.addEventListener('click', (ev) => ev.stopPropagation());
      const kindText = b.shortcut_kind === 'identity' ? 'identity shortcut' : b.shortcut_kind === 'A' ? 'zero-padding shortcut (A)' : 'projection shortcut (B)';
      const card = el('div', { class: 'blk', 'data-block': b.id, role: 'button', tabindex: '0', title: `${b.id}: ${kindText}. Click to focus the charts on it.` }, [
        blockIcon(b),
        el('span', { class: 'blk-id', text: b.id.replace(/^layer/, '') }),
        sw,
      ]);
      card.addEventListener('click', () => handlers.select(b.id));
      card.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          handlers.select(b.id);
        }
      });
      row.append(card);
    }
    group.append(row);
    container.append(group);
  }
  container.append(
    el('div', { class: 'stem-card head-card', title: 'global average pooling, fully connected layer, softmax' }, [
      el('span', { class: 'card-title', text: 'head' }),
      el('span', { class: 'card-sub', text: `avg pool, fc ${manifest.num_classes}` }),
    ]),
  );
}

export function updateStrip(container, { gates, block }) {
  for (const input of container.querySelectorAll('input[data-gate]')) {
    const on = gates[Number(input.dataset.gate)] > 0;
    input.checked = on;
    input.closest('.blk').classList.toggle('off', !on);
  }
  for (const card of container.querySelectorAll('.blk')) {
    const selected = card.dataset.block === block;
    card.classList.toggle('selected', selected);
    card.setAttribute('aria-pressed', String(selected));
  }
}
