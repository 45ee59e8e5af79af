// Live plot of a session's current scan: counters against the scanned motor (uPlot), or a
// 2D map for meshes. Fed by /ws/plot/{session} (docs/webshell.md), which reads the data layer.
//
// The page follows the user: the curves shown are the ones chosen with plotselect() at the
// prompt (a checkbox per counter toggles one by hand), the y axis can be logarithmic, a mesh
// is drawn on the scan's own grid with any counter, and MCA spectra and camera frames follow
// the scan while it runs. Points are kept in growing typed arrays; a long scan is drawn
// decimated (the min and max of each bucket of points), never by spreading whole arrays.
(() => {
  "use strict";
  const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"];
  const MIN_BUCKETS = 200; // a long scan is drawn with at most 2 points per bucket

  /** A channel's points: a Float64Array that doubles when full (NaN for a missing value). */
  class Column {
    constructor() {
      this.values = new Float64Array(256);
      this.length = 0;
    }

    push(batch) {
      const needed = this.length + batch.length;
      if (needed > this.values.length) {
        let size = this.values.length;
        while (size < needed) size *= 2;
        const grown = new Float64Array(size);
        grown.set(this.values.subarray(0, this.length));
        this.values = grown;
      }
      for (let i = 0; i < batch.length; i++) {
        const v = batch[i];
        this.values[this.length++] = v === null ? NaN : v;
      }
    }
  }

  /** [min, max] of the finite values of a[0..n) (a loop: no spread over the array). */
  function range(a, n) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = a[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  }

  /** The points to draw: every point, or, past 2 * buckets, per bucket of indices the first
   *  and last x with each curve's min and max (in the order they occur). */
  function decimate(x, ys, n, buckets, log) {
    const value = (v) => (Number.isNaN(v) || (log && v <= 0) ? null : v);
    if (n <= 2 * buckets) {
      const xs = new Array(n), out = ys.map(() => new Array(n));
      for (let i = 0; i < n; i++) {
        xs[i] = Number.isNaN(x[i]) ? null : x[i];
        for (let k = 0; k < ys.length; k++) out[k][i] = value(ys[k][i]);
      }
      return [xs, ...out];
    }
    const xs = [], out = ys.map(() => []);
    const size = n / buckets;
    for (let b = 0; b < buckets; b++) {
      const start = Math.floor(b * size), end = Math.min(n, Math.floor((b + 1) * size));
      if (end <= start) continue;
      xs.push(x[start], x[end - 1]);
      for (let k = 0; k < ys.length; k++) {
        const y = ys[k];
        let lo = Infinity, hi = -Infinity, ilo = start, ihi = start;
        for (let i = start; i < end; i++) {
          const v = y[i];
          if (v < lo) { lo = v; ilo = i; }
          if (v > hi) { hi = v; ihi = i; }
        }
        const first = ilo <= ihi ? lo : hi, second = ilo <= ihi ? hi : lo;
        out[k].push(Number.isFinite(first) ? value(first) : null,
                    Number.isFinite(second) ? value(second) : null);
      }
    }
    return [xs, ...out];
  }

  class LivePlot {
    constructor(container, session, { server, token, viewKey, console } = {}) {
      this.container = container;
      this.session = session;
      this.server = server || window.location.origin;
      this.token = token;
      this.viewKey = viewKey;  // a watch link's key (with the console it watches)
      this.console = console;
      this.scan = null;
      this.columns = {};
      this.npoints = 0;
      this.state = "idle";
      this.shown = new Set();
      this.logY = false;
      this.meshCounter = null;
      this._closed = false;
      this._dirty = false;
      this._title = document.createElement("div");
      this._title.className = "plot-title";
      this._title.textContent = "no scan yet in this session";
      this._controls = document.createElement("div");
      this._controls.className = "plot-controls";
      this._area = document.createElement("div");
      this._area.className = "plot-area";
      this._spectraBar = document.createElement("div");
      this._spectraBar.className = "spectra-bar";
      this._spectrumArea = document.createElement("div");
      this._spectrumArea.className = "spectrum-area";
      container.append(this._title, this._controls, this._area, this._spectraBar,
        this._spectrumArea);
      this._shownSpectrum = null;
      this._connect();
    }

    close() {
      this._closed = true;
      if (this.ws) this.ws.close();
    }

    _connect() {
      const base = new URL(this.server);
      const proto = base.protocol === "https:" ? "wss:" : "ws:";
      const query = new URLSearchParams();
      if (this.token) query.set("token", this.token);
      if (this.viewKey) { query.set("view", this.viewKey); query.set("console", this.console); }
      const params = query.toString() ? "?" + query : "";
      this.ws = new WebSocket(`${proto}//${base.host}/ws/plot/${encodeURIComponent(this.session)}${params}`);
      this.ws.onmessage = (event) => this._onMessage(JSON.parse(event.data));
      this.ws.onopen = () => {  // a spectrum or frame shown before a reconnect: follow it again
        if (this._shownSpectrum) this._request(this._shownKind, this._shownSpectrum);
      };
      this.ws.onclose = () => { if (!this._closed) setTimeout(() => this._connect(), 1000); };
    }

    _onMessage([kind, payload]) {
      if (kind === "scan") {
        this.scan = payload;
        this.columns = {};
        this.npoints = 0;
        this.state = "running";
        for (const name of [...payload.motors, ...payload.counters]) this.columns[name] = new Column();
        this.shown = new Set(payload.selected || payload.counters);
        if (!this.meshCounter || !payload.counters.includes(this.meshCounter)) this.meshCounter = null;
        this._build();
        this._spectraButtons();
        const shown = this._shownSpectrum;  // keep following it in the new scan
        if (shown && [...payload.spectra, ...payload.images].includes(shown)) {
          this._request(this._shownKind, shown);
        }
      } else if (kind === "points") {
        for (const [name, values] of Object.entries(payload)) {
          if (!this.columns[name]) this.columns[name] = new Column();
          this.columns[name].push(values);
        }
        let n = Infinity;
        for (const column of Object.values(this.columns)) if (column.length < n) n = column.length;
        this.npoints = Number.isFinite(n) ? n : 0;
        this._scheduleDraw();
      } else if (kind === "select") {
        this.shown = new Set(payload.selected);
        this.meshCounter = null;
        this._build();
      } else if (kind === "end") {
        this.state = payload.end_reason || payload.state;
        this._updateTitle();
        this._scheduleDraw();
      } else if (kind === "spectrum") {
        this._drawSpectrum(payload);
      } else if (kind === "frame") {
        this._drawFrame(payload);
      } else if (kind === "error") {
        this._title.textContent = payload;
      }
      this._publishState();
    }

    /** What the page shows, as data attributes (tests and other scripts read them). */
    _publishState() {
      const data = this.container.dataset;
      data.points = String(this.npoints);
      data.state = this.state;
      data.scan = this.scan ? String(this.scan.number) : "";
      data.shown = this.scan ? this.scan.counters.filter((c) => this.shown.has(c)).join(",") : "";
      data.log = this.logY ? "1" : "0";
    }

    /** Ask the server for the last point of a 1D channel (an MCA spectrum) of this scan; it
     *  sends the next ones as the scan goes on. */
    requestSpectrum(channel) { this._request("spectrum", channel); }

    /** Ask for the last frame of a 2D detector (read by the server from its file), and the
     *  next ones while the scan runs. */
    requestFrame(channel) { this._request("frame", channel); }

    _request(kind, channel) {
      this._shownSpectrum = channel;
      this._shownKind = kind;
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify([kind, channel, null]));
      }
    }

    _drawFrame({ channel, index, shape, pixels, min, max }) {
      this._spectrumArea.innerHTML = "";
      this._spectrumArea.dataset.channel = channel;
      this._spectrumArea.dataset.index = String(index);
      const [rows, cols] = shape;
      const title = document.createElement("div");
      title.className = "plot-title";
      title.textContent = `${channel} [${index}] (${min} .. ${max})`;
      const canvas = document.createElement("canvas");
      canvas.width = cols;
      canvas.height = rows;
      canvas.className = "frame";
      const image = canvas.getContext("2d").createImageData(cols, rows);
      for (let i = 0; i < pixels.length; i++) {
        const v = pixels[i];
        image.data[4 * i] = v; image.data[4 * i + 1] = v; image.data[4 * i + 2] = v;
        image.data[4 * i + 3] = 255;
      }
      canvas.getContext("2d").putImageData(image, 0, 0);
      this._spectrumArea.append(title, canvas);
    }

    _spectraButtons() {
      this._spectraBar.innerHTML = "";
      const add = (name, kind) => {
        const button = document.createElement("button");
        button.className = "spectrum-button";
        button.textContent = name;
        button.title = "show it, following the scan";
        button.dataset.channel = name;
        button.onclick = () => this._request(kind, name);
        this._spectraBar.appendChild(button);
      };
      for (const name of (this.scan && this.scan.spectra) || []) add(name, "spectrum");
      for (const name of (this.scan && this.scan.images) || []) add(name, "frame");
    }

    _drawSpectrum({ channel, index, values }) {
      this._spectrumArea.dataset.channel = channel;
      this._spectrumArea.dataset.index = String(index);
      const y = values.map((v) => (v === null ? null : v));
      const x = new Array(y.length);
      for (let i = 0; i < x.length; i++) x[i] = i;
      if (this._spectrum && this._spectrum.channel === channel && this._spectrum.bins === y.length) {
        this._spectrum.plot.setData([x, y]);  // the next spectrum of a running scan
        const title = this._spectrum.plot.root.querySelector(".u-title");
        if (title) title.textContent = `${channel} [${index}]`;
        return;
      }
      this._spectrumArea.innerHTML = "";
      const width = this._spectrumArea.clientWidth || 500;
      const plot = new window.uPlot({
        width, height: 180, title: `${channel} [${index}]`,
        series: [{ label: "bin" }, { label: channel, stroke: "#4363d8", width: 1 }],
        scales: { x: { time: false } },
        axes: [{ stroke: "#ccc", grid: { stroke: "#333" } }, { stroke: "#ccc", grid: { stroke: "#333" } }],
      }, [x, y], this._spectrumArea);
      this._spectrum = { channel, bins: y.length, plot };
    }

    _updateTitle() {
      const s = this.scan;
      if (!s) return;
      const total = s.npoints ? `/${s.npoints}` : "";
      this._title.textContent = `#${s.number} ${s.title} — ${this.npoints}${total} points (${this.state})`;
    }

    _label(name) {
      const s = this.scan;
      const label = (s.labels && s.labels[name]) || name;
      const unit = s.units && s.units[name];
      return unit ? `${label} [${unit}]` : label;
    }

    /** The counters' checkboxes, the log scale, the mesh's counter. */
    _buildControls() {
      const s = this.scan;
      this._controls.innerHTML = "";
      if (s.mesh) {
        const select = document.createElement("select");
        select.className = "mesh-counter";
        for (const name of s.counters) {
          const option = document.createElement("option");
          option.value = name;
          option.textContent = this._label(name);
          select.appendChild(option);
        }
        this.meshCounter = this.meshCounter
          || s.counters.find((c) => this.shown.has(c)) || s.counters[0] || null;
        if (this.meshCounter) select.value = this.meshCounter;
        select.onchange = () => { this.meshCounter = select.value; this._scheduleDraw(); };
        this._controls.appendChild(select);
        return;
      }
      s.counters.forEach((name, i) => {
        const label = document.createElement("label");
        label.className = "counter-toggle";
        label.style.color = COLORS[i % COLORS.length];
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = this.shown.has(name);
        box.dataset.channel = name;
        box.onchange = () => {
          if (box.checked) this.shown.add(name); else this.shown.delete(name);
          if (this.uplot) this.uplot.setSeries(i + 1, { show: box.checked });
          this._publishState();
        };
        label.append(box, " " + this._label(name));
        this._controls.appendChild(label);
      });
      const log = document.createElement("label");
      log.className = "log-toggle";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = this.logY;
      box.onchange = () => { this.logY = box.checked; this._build(); this._publishState(); };
      log.append(box, " log y");
      this._controls.appendChild(log);
    }

    _build() {
      this._area.innerHTML = "";
      this.uplot = null;
      this.canvas = null;
      const s = this.scan;
      if (!s) return;
      this._updateTitle();
      this._buildControls();
      const width = this._area.clientWidth || 500;
      const height = Math.max(200, (this._area.clientHeight || 350) - 60);  // room for the legend
      if (s.mesh) {
        this.canvas = document.createElement("canvas");
        this.canvas.width = width;
        this.canvas.height = height;
        this.canvas.className = "mesh";
        this._area.appendChild(this.canvas);
        this._drawMesh();
        return;
      }
      if (!s.counters.length) return;  // nothing scalar to plot (an MCA-only scan)
      const xName = s.motors[0] || null;
      const series = [{ label: xName ? this._label(xName) : "point" }];
      s.counters.forEach((name, i) => series.push({
        label: this._label(name), stroke: COLORS[i % COLORS.length], width: 1.5,
        points: { show: true, size: 4 }, show: this.shown.has(name), spanGaps: false,
      }));
      this._buckets = Math.max(MIN_BUCKETS, Math.floor(width));
      this.uplot = new window.uPlot({
        width, height, series,
        scales: { x: { time: false }, y: { distr: this.logY ? 3 : 1 } },
        axes: [{ stroke: "#ccc", grid: { stroke: "#333" } }, { stroke: "#ccc", grid: { stroke: "#333" } }],
        hooks: {
          setSeries: [(u, index, opts) => {  // the legend toggles a curve too
            if (index == null || !("show" in opts)) return;
            const name = s.counters[index - 1];
            if (opts.show) this.shown.add(name); else this.shown.delete(name);
            const box = this._controls.querySelector(`input[data-channel="${CSS.escape(name)}"]`);
            if (box) box.checked = opts.show;
            this._publishState();
          }],
        },
      }, this._curves(), this._area);
    }

    _curves() {
      const s = this.scan;
      const n = this.npoints;
      const xName = s.motors[0];
      let x;
      if (xName) x = this.columns[xName].values;
      else {
        x = new Float64Array(n);
        for (let i = 0; i < n; i++) x[i] = i;
      }
      const ys = s.counters.map((name) => this.columns[name].values);
      const data = decimate(x, ys, n, this._buckets || MIN_BUCKETS, this.logY);
      this.container.dataset.drawn = String(data[0].length);
      return data;
    }

    _scheduleDraw() {
      if (this._dirty) return;
      this._dirty = true;
      requestAnimationFrame(() => {
        this._dirty = false;
        this._updateTitle();
        if (this.uplot) this.uplot.setData(this._curves());
        else if (this.canvas) this._drawMesh();
        this._publishState();
      });
    }

    /** The mesh on its own grid: point i is row floor(i / columns) (the slow motor, drawn
     *  upward), column i % columns (the fast one; reversed on odd rows with backnforth). */
    _drawMesh() {
      const s = this.scan;
      const [rows, cols] = s.mesh.shape;
      const zn = this.meshCounter;
      const n = Math.min(this.npoints, rows * cols);
      const ctx = this.canvas.getContext("2d");
      ctx.fillStyle = "#111";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      this.container.dataset.mesh = `${rows}x${cols}`;
      this.container.dataset.meshCounter = zn || "";
      if (!n || !zn) return;
      const z = this.columns[zn].values;
      const [z0, z1] = range(z, n);
      const cw = this.canvas.width / cols, ch = this.canvas.height / rows;
      for (let i = 0; i < n; i++) {
        const row = Math.floor(i / cols);
        let col = i % cols;
        if (s.mesh.backnforth && row % 2 === 1) col = cols - 1 - col;
        const v = z[i];
        const fz = z1 > z0 && Number.isFinite(v) ? (v - z0) / (z1 - z0) : 0;
        ctx.fillStyle = Number.isFinite(v) ? `hsl(${240 - 240 * fz}, 90%, 50%)` : "#444";
        ctx.fillRect(col * cw, (rows - 1 - row) * ch, cw + 1, ch + 1);
      }
    }
  }

  window.BlissngLivePlot = LivePlot;
})();
