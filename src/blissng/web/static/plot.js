// Live plot of a session's current scan: counters against the scanned motor (uPlot), or a
// 2D map for meshes. Fed by /ws/plot/{session} (docs/webshell.md), which reads the data layer.
(() => {
  "use strict";
  const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"];

  class LivePlot {
    constructor(container, session, { server, token } = {}) {
      this.container = container;
      this.session = session;
      this.server = server || window.location.origin;
      this.token = token;
      this.scan = null;
      this.data = {};
      this.npoints = 0;
      this.state = "idle";
      this._closed = false;
      this._dirty = false;
      this._title = document.createElement("div");
      this._title.className = "plot-title";
      this._title.textContent = "no scan yet in this session";
      this._area = document.createElement("div");
      this._area.className = "plot-area";
      this._spectraBar = document.createElement("div");
      this._spectraBar.className = "spectra-bar";
      this._spectrumArea = document.createElement("div");
      this._spectrumArea.className = "spectrum-area";
      container.append(this._title, this._area, this._spectraBar, this._spectrumArea);
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
      const params = this.token ? "?token=" + encodeURIComponent(this.token) : "";
      this.ws = new WebSocket(`${proto}//${base.host}/ws/plot/${encodeURIComponent(this.session)}${params}`);
      this.ws.onmessage = (event) => this._onMessage(JSON.parse(event.data));
      this.ws.onclose = () => { if (!this._closed) setTimeout(() => this._connect(), 1000); };
    }

    _onMessage([kind, payload]) {
      if (kind === "scan") {
        this.scan = payload;
        this.data = {};
        this.npoints = 0;
        this.state = "running";
        for (const name of [...payload.motors, ...payload.counters]) this.data[name] = [];
        this._build();
        this._spectraButtons();
      } else if (kind === "points") {
        for (const [name, values] of Object.entries(payload)) {
          if (!this.data[name]) this.data[name] = [];
          this.data[name].push(...values);
        }
        const lengths = Object.values(this.data).map((v) => v.length);
        this.npoints = lengths.length ? Math.min(...lengths) : 0;
        this._scheduleDraw();
      } else if (kind === "end") {
        this.state = payload.end_reason || payload.state;
        this._updateTitle();
        this._scheduleDraw();
        if (this._shownSpectrum) this._request(this._shownKind, this._shownSpectrum);
      } else if (kind === "spectrum") {
        this._drawSpectrum(payload);
      } else if (kind === "frame") {
        this._drawFrame(payload);
      } else if (kind === "error") {
        this._title.textContent = payload;
      }
      this.container.dataset.points = String(this.npoints);
      this.container.dataset.state = this.state;
      this.container.dataset.scan = this.scan ? String(this.scan.number) : "";
    }

    /** Ask the server for the last point of a 1D channel (an MCA spectrum) of this scan. */
    requestSpectrum(channel) { this._request("spectrum", channel); }

    /** Ask for the last frame of a 2D detector (read by the server from its file). */
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
        button.textContent = "last " + name;
        button.dataset.channel = name;
        button.onclick = () => this._request(kind, name);
        this._spectraBar.appendChild(button);
      };
      for (const name of (this.scan && this.scan.spectra) || []) add(name, "spectrum");
      for (const name of (this.scan && this.scan.images) || []) add(name, "frame");
    }

    _drawSpectrum({ channel, index, values }) {
      this._spectrumArea.innerHTML = "";
      this._spectrumArea.dataset.channel = channel;
      this._spectrumArea.dataset.index = String(index);
      const width = this._spectrumArea.clientWidth || 500;
      const x = values.map((_, i) => i);
      new window.uPlot({
        width, height: 180, title: `${channel} [${index}]`,
        series: [{ label: "bin" }, { label: channel, stroke: "#4363d8", width: 1 }],
        scales: { x: { time: false } },
        axes: [{ stroke: "#ccc", grid: { stroke: "#333" } }, { stroke: "#ccc", grid: { stroke: "#333" } }],
      }, [x, values], this._spectrumArea);
    }

    _updateTitle() {
      const s = this.scan;
      if (!s) return;
      const total = s.npoints ? `/${s.npoints}` : "";
      this._title.textContent = `#${s.number} ${s.title} — ${this.npoints}${total} points (${this.state})`;
    }

    _build() {
      this._area.innerHTML = "";
      this.uplot = null;
      this.canvas = null;
      const s = this.scan;
      this._updateTitle();
      const width = this._area.clientWidth || 500;
      const height = Math.max(200, (this._area.clientHeight || 350) - 60);  // room for the legend
      if (s.mesh) {
        this.canvas = document.createElement("canvas");
        this.canvas.width = width;
        this.canvas.height = height;
        this.canvas.className = "mesh";
        this._area.appendChild(this.canvas);
        return;
      }
      if (!s.counters.length) return;  // nothing scalar to plot (an MCA-only scan)
      const xName = s.motors[0] || null;
      const series = [{ label: xName || "point" }];
      s.counters.forEach((name, i) => series.push({
        label: name, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: true, size: 4 },
      }));
      this.uplot = new window.uPlot({
        width, height, series,
        scales: { x: { time: false } },
        axes: [{ stroke: "#ccc", grid: { stroke: "#333" } }, { stroke: "#ccc", grid: { stroke: "#333" } }],
      }, this._columns(), this._area);
    }

    _columns() {
      const s = this.scan;
      const n = this.npoints;
      const xName = s.motors[0];
      const x = xName ? this.data[xName].slice(0, n) : Array.from({ length: n }, (_, i) => i);
      return [x, ...s.counters.map((name) => this.data[name].slice(0, n))];
    }

    _scheduleDraw() {
      if (this._dirty) return;
      this._dirty = true;
      requestAnimationFrame(() => {
        this._dirty = false;
        this._updateTitle();
        if (this.uplot) this.uplot.setData(this._columns());
        else if (this.canvas) this._drawMesh();
      });
    }

    _drawMesh() {
      const s = this.scan;
      const [xn, yn] = s.motors;
      const zn = s.counters[0];
      const n = this.npoints;
      const ctx = this.canvas.getContext("2d");
      ctx.fillStyle = "#111";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      if (!n || !zn) return;
      const xs = this.data[xn].slice(0, n), ys = this.data[yn].slice(0, n), zs = this.data[zn].slice(0, n);
      const range = (a) => [Math.min(...a), Math.max(...a)];
      const [x0, x1] = range(xs), [y0, y1] = range(ys), [z0, z1] = range(zs);
      const nx = new Set(xs).size || 1, ny = new Set(ys).size || 1;
      const cw = this.canvas.width / nx, ch = this.canvas.height / ny;
      for (let i = 0; i < n; i++) {
        const fx = x1 > x0 ? (xs[i] - x0) / (x1 - x0) : 0;
        const fy = y1 > y0 ? (ys[i] - y0) / (y1 - y0) : 0;
        const fz = z1 > z0 ? (zs[i] - z0) / (z1 - z0) : 0;
        ctx.fillStyle = `hsl(${240 - 240 * fz}, 90%, 50%)`;
        ctx.fillRect(fx * (this.canvas.width - cw), (1 - fy) * (this.canvas.height - ch), cw + 1, ch + 1);
      }
    }
  }

  window.BlissngLivePlot = LivePlot;
})();
