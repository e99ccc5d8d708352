// A virtualised list of rows: only the rows in view (plus an overscan) are in the DOM.
//
// Rows have a fixed height (the CSS variable --row-h); an expanded row may be taller, and
// its extra height is measured with a ResizeObserver (no layout reads while rendering).
// Adding items costs an array push; all DOM work happens in one requestAnimationFrame
// callback, so there is at most one render per frame however fast items arrive.
//
// Items get a sequence number when added; an item's index is `seq - items[0].seq`, which
// stays right when the oldest items are dropped (at most `cap` are kept).

const OVERSCAN = 12;

export class VirtualList {
  /**
   * @param {HTMLElement} scroller  the scrolling element (it gets the rows)
   * @param {object} opts  renderRow(item, expanded) → Element (with a `.row-main` part that
   *   toggles expansion when clicked); expandable(item) → whether it can expand; cap; follow (stick to the bottom while the user is
   *   there); onRender(list) after each render; onFollow(following) when it changes
   */
  constructor(scroller, { renderRow, expandable = () => true, cap = 200000, follow = false, onRender, onFollow }) {
    this.scroller = scroller;
    this.renderRow = renderRow;
    this.expandable = expandable;
    this.cap = cap;
    this.followable = follow;
    this.following = follow;
    this.onRender = onRender;
    this.onFollow = onFollow;

    this.items = [];
    this.nextSeq = 0;
    this.rows = new Map(); // seq → rendered element
    this.expanded = new Map(); // seq → extra height in px over rowH
    this.expandedSorted = []; // [[seq, extra], …] by seq, for offsets
    this.scrollTop = 0;
    this.viewH = scroller.clientHeight || 600;
    this.rowH = parseFloat(getComputedStyle(scroller).getPropertyValue('--row-h')) || 22;
    this.frame = 0;
    this.renderedHeight = 0; // the sizer's height at the last render

    this.sizer = document.createElement('div');
    this.sizer.className = 'vl-sizer';
    this.win = document.createElement('div');
    this.win.className = 'vl-window';
    this.sizer.append(this.win);
    scroller.append(this.sizer);

    this.resize = new ResizeObserver((entries) => this.onResize(entries));
    this.resize.observe(scroller);
    scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    scroller.addEventListener('wheel', (e) => { if (e.deltaY < 0) this.setFollowing(false); }, { passive: true });
    this.win.addEventListener('click', (e) => this.onClick(e));
    this.win.addEventListener('keydown', (e) => this.onKey(e));
  }

  get length() { return this.items.length; }

  /** Adds items at the end; they show at the next frame. */
  push(item) {
    item.seq = this.nextSeq;
    this.nextSeq += 1;
    this.items.push(item);
    this.schedule();
  }

  pushAll(items) {
    for (const item of items) this.push(item);
  }

  clear() {
    this.items = [];
    this.expanded.clear();
    this.expandedSorted = [];
    for (const row of this.rows.values()) this.resize.unobserve(row);
    this.rows.clear();
    this.win.replaceChildren();
    this.scrollTop = 0;
    this.scroller.scrollTop = 0;
    this.setFollowing(this.followable);
    this.schedule();
  }

  /** Follows the end again (the "Jump to latest" button). */
  jumpToEnd() {
    this.setFollowing(true);
    this.schedule();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  setFollowing(on) {
    on = on && this.followable;
    if (on === this.following) return;
    this.following = on;
    this.onFollow?.(on);
  }

  onScroll() {
    this.scrollTop = this.scroller.scrollTop;
    if (this.followable) {
      // Against the height laid out, not the items' (which may have grown since the last
      // render): a scroll event that follows our own jump to the end must not end following.
      const atEnd = this.scrollTop + this.viewH >= this.renderedHeight - this.rowH / 2;
      this.setFollowing(atEnd);
    }
    this.schedule();
  }

  onResize(entries) {
    let changed = false;
    for (const entry of entries) {
      const height = entry.borderBoxSize?.[0]?.blockSize ?? entry.contentRect.height;
      if (entry.target === this.scroller) {
        this.viewH = entry.contentRect.height;
        changed = true;
      } else if (entry.target.isConnected) {
        const seq = Number(entry.target.dataset.seq);
        if (this.expanded.has(seq) && height > 0) {
          const extra = Math.max(0, height - this.rowH);
          if (extra !== this.expanded.get(seq)) {
            this.expanded.set(seq, extra);
            this.sortExpanded();
            changed = true;
          }
        }
      }
    }
    if (changed) this.schedule();
  }

  // --- expansion ---------------------------------------------------------------------

  onClick(e) {
    const row = e.target.closest('[data-seq]');
    if (!row || !e.target.closest('.row-main')) return;
    if (e.target.closest('a, button')) return;
    if (String(window.getSelection?.() || '').length > 0) return; // the user selects text
    this.toggle(Number(row.dataset.seq));
  }

  onKey(e) {
    const row = e.target.closest('[data-seq]');
    if (!row || e.target !== row) return;
    if (e.key === 'Enter') {
      e.preventDefault();
      this.toggle(Number(row.dataset.seq));
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
      if (next) {
        next.focus({ preventScroll: true });
        next.scrollIntoView({ block: 'nearest' });
      }
    }
  }

  toggle(seq) {
    const item = this.itemAt(seq);
    if (!item || !this.expandable(item)) return;
    if (this.expanded.has(seq)) {
      this.expanded.delete(seq);
    } else {
      this.expanded.set(seq, 0);
      // The user is reading this row: keep it where it is rather than follow new lines.
      this.setFollowing(false);
    }
    this.sortExpanded();
    const old = this.rows.get(seq);
    if (old) {
      const hadFocus = old.contains(document.activeElement);
      const row = this.makeRow(item);
      old.replaceWith(row);
      this.resize.unobserve(old);
      this.rows.set(seq, row);
      if (hadFocus) row.focus({ preventScroll: true });
    }
    this.schedule();
  }

  sortExpanded() {
    this.expandedSorted = [...this.expanded].sort((a, b) => a[0] - b[0]);
  }

  // --- geometry ----------------------------------------------------------------------

  itemAt(seq) {
    if (!this.items.length) return undefined;
    return this.items[seq - this.items[0].seq];
  }

  totalHeight() {
    let extra = 0;
    for (const [, e] of this.expandedSorted) extra += e;
    return this.items.length * this.rowH + extra;
  }

  /** The top of the row at `index`. */
  offsetOf(index) {
    const first = this.items.length ? this.items[0].seq : 0;
    let extra = 0;
    for (const [seq, e] of this.expandedSorted) {
      if (seq - first >= index) break;
      extra += e;
    }
    return index * this.rowH + extra;
  }

  /** The index of the row at height `y`. */
  indexAt(y) {
    const first = this.items.length ? this.items[0].seq : 0;
    let extra = 0;
    for (const [seq, e] of this.expandedSorted) {
      const top = (seq - first) * this.rowH + extra;
      if (y < top) break;
      if (y < top + this.rowH + e) return seq - first;
      extra += e;
    }
    return Math.floor((y - extra) / this.rowH);
  }

  // --- rendering ---------------------------------------------------------------------

  /** Drops the oldest items over the cap, keeping the view still when not following. */
  trim() {
    const over = this.items.length - this.cap;
    if (over <= 0) return;
    const firstKept = this.items[over].seq;
    let removed = over * this.rowH;
    for (const [seq, e] of this.expanded) {
      if (seq < firstKept) {
        removed += e;
        this.expanded.delete(seq);
      }
    }
    this.sortExpanded();
    this.items.splice(0, over);
    if (!this.following) {
      this.scrollTop = Math.max(0, this.scrollTop - removed);
      this.scroller.scrollTop = this.scrollTop;
    }
  }

  render() {
    this.frame = 0;
    this.trim();
    const n = this.items.length;
    const total = this.totalHeight();
    this.sizer.style.height = `${total}px`;
    this.renderedHeight = total;
    if (this.following) {
      this.scrollTop = Math.max(0, total - this.viewH);
      this.scroller.scrollTop = this.scrollTop;
    }
    let first = 0;
    let last = -1;
    if (n) {
      first = Math.max(0, this.indexAt(this.scrollTop) - OVERSCAN);
      last = Math.min(n - 1, this.indexAt(this.scrollTop + this.viewH) + OVERSCAN);
    }
    this.placeRows(first, last);
    this.win.style.transform = `translateY(${n ? this.offsetOf(first) : 0}px)`;
    this.onRender?.(this);
  }

  /** Makes the window hold exactly rows first..last, keeping the rows already there. */
  placeRows(first, last) {
    const base = this.items.length ? this.items[0].seq : 0;
    const lo = base + first;
    const hi = base + last;
    for (const [seq, row] of this.rows) {
      if (seq < lo || seq > hi) {
        row.remove();
        this.resize.unobserve(row);
        this.rows.delete(seq);
      }
    }
    const before = document.createDocumentFragment();
    const after = document.createDocumentFragment();
    let seenExisting = false;
    for (let seq = lo; seq <= hi; seq += 1) {
      if (this.rows.has(seq)) {
        seenExisting = true;
        continue;
      }
      const row = this.makeRow(this.items[seq - base]);
      this.rows.set(seq, row);
      (seenExisting ? after : before).append(row);
    }
    if (before.childNodes.length) this.win.prepend(before);
    if (after.childNodes.length) this.win.append(after);
  }

  makeRow(item) {
    const expanded = this.expanded.has(item.seq);
    const row = this.renderRow(item, expanded);
    row.dataset.seq = String(item.seq);
    if (expanded) this.resize.observe(row);
    return row;
  }
}
