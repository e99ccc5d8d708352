// A log list fed by a live stream: the virtual list, its toolbar (line count, Pause/Resume,
// "N new lines", "Jump to latest") and the stream's state in the header status. The live
// view and a deployment's page both use it.

import { h } from './dom.js';
import { LogStream } from './stream.js';
import { eventItem, gapItem, isExpandable, rowRenderer } from './row.js';
import { setStatus } from './status.js';
import { VirtualList } from './virtual-list.js';

const CAP = 200000;

const STATE_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  ended: 'Ended',
};

export class LogPanel {
  /**
   * @param {object} opts  highlight(): RegExp|null; query(): the streamed query;
   *   onEnd(data): a deployment stream's end; onError(message|null): a stream error to show
   */
  constructor({ highlight, query, onEnd, onError }) {
    this.onEnd = onEnd;
    this.onError = onError;
    this.stream = null;
    this.state = 'idle';
    this.detail = '';
    this.paused = false;
    this.held = [];
    this.toolbarFrame = 0;

    this.count = h('span', { class: 'count', dataset: { testid: 'count' }, text: '0 lines' });
    this.pauseBtn = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false', title: 'Pause (space)' }, 'Pause');
    this.pauseBtn.addEventListener('click', () => this.togglePause());
    this.newLines = h('button', { type: 'button', class: 'btn accent', hidden: true, dataset: { testid: 'new-lines' } });
    this.newLines.addEventListener('click', () => this.setPaused(false));
    this.jump = h('button', { type: 'button', class: 'btn jump', hidden: true }, 'Jump to latest');
    this.jump.addEventListener('click', () => this.list.jumpToEnd());

    this.scroller = h('div', {
      class: 'lines', role: 'log', 'aria-label': 'Log lines', tabindex: 0,
      // A log this busy would flood a screen reader: rows are read on demand, not announced.
      'aria-live': 'off',
      dataset: { testid: 'lines' },
    });
    this.el = h('section', { class: 'log-panel' },
      h('div', { class: 'panel-bar' }, this.count, this.pauseBtn, this.newLines),
      h('div', { class: 'lines-wrap' }, this.scroller, this.jump));

    // The list measures its container, so it is made once the panel is in the document.
    this.list = null;
    this.rowCtx = { highlight, query };
  }

  /** Call once `el` is in the document. */
  attach() {
    this.list = new VirtualList(this.scroller, {
      renderRow: rowRenderer(this.rowCtx),
      expandable: isExpandable,
      cap: CAP,
      follow: true,
      onRender: (list) => {
        this.count.textContent = `${list.length} lines`;
        this.showJump();
      },
      onFollow: () => this.showJump(),
    });
  }

  /** "Jump to latest" only when not following and there is something below to jump to. */
  showJump() {
    const list = this.list;
    this.jump.hidden = list.following || list.totalHeight() <= list.scrollTop + list.viewH + 1;
  }

  /** (Re)starts streaming with these parameters, from an empty list. */
  start(params) {
    this.stop();
    this.list.clear();
    this.held = [];
    this.scheduleToolbar();
    this.onError?.(null);
    this.stream = new LogStream(params, {
      event: (pos, raw) => this.add(eventItem(pos, raw)),
      gap: (data) => this.add(gapItem(data)),
      end: (data) => this.onEnd?.(data),
      state: (state, detail) => this.setState(state, detail),
    });
    this.stream.start();
  }

  stop() {
    this.stream?.stop();
    this.stream = null;
  }

  destroy() {
    this.stop();
    cancelAnimationFrame(this.toolbarFrame);
    this.list?.destroy();
  }

  add(item) {
    if (this.paused) {
      this.held.push(item);
      if (this.held.length > CAP) this.held.splice(0, this.held.length - CAP);
      this.scheduleToolbar();
    } else {
      this.list.push(item);
    }
  }

  togglePause() {
    this.setPaused(!this.paused);
  }

  setPaused(paused) {
    if (paused === this.paused) return;
    this.paused = paused;
    this.pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    this.pauseBtn.setAttribute('aria-pressed', String(paused));
    if (!paused && this.held.length) {
      this.list.pushAll(this.held);
      this.held = [];
    }
    this.scheduleToolbar();
    this.showState();
  }

  /** The "N new lines" button, at most once per frame however fast lines are held. */
  scheduleToolbar() {
    if (this.toolbarFrame) return;
    this.toolbarFrame = requestAnimationFrame(() => {
      this.toolbarFrame = 0;
      const n = this.held.length;
      this.newLines.hidden = !this.paused || n === 0;
      this.newLines.textContent = `${n} new ${n === 1 ? 'line' : 'lines'}`;
    });
  }

  setState(state, detail) {
    this.state = state;
    this.detail = detail || '';
    if (state === 'error') this.onError?.(this.detail);
    else if (state === 'live') this.onError?.(null);
    this.showState();
  }

  showState() {
    if (this.state === 'error') setStatus(`Error: ${this.detail}`, 'error');
    else if (this.state === 'live' && this.paused) setStatus('Paused', 'paused');
    else setStatus(STATE_TEXT[this.state] || '', this.state);
  }
}
