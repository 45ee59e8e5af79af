// <blissng-shell session="demo"> — a blissng console in any web page.
//
// Attributes: session (required), server (base URL, default: this page's origin), token
// (needed when the page is not served by the blissng server itself: another GUI embedding
// the console; its origin must be on the server's --allow-origin list), mode ("control" or
// "view"), console (an existing console id to attach to; default: the one this browser tab
// used last for this session, so a reload reattaches), view-key (a watch link's key: watch
// the given console read-only without the token).
//
// Events: "blissng-status" (detail: the console status), "blissng-closed" (detail: {code,
// reason}). Protocol: docs/webshell.md.
(() => {
  "use strict";
  if (customElements.get("blissng-shell")) return;

  const scriptBase = (() => {
    const src = document.currentScript && document.currentScript.src;
    return src ? src.replace(/[^/]*$/, "") : "/static/";
  })();

  function loadOnce(url, kind) {
    const id = "blissng-asset-" + url;
    const existing = document.getElementById(id);
    if (existing) return existing._loaded;
    const el = document.createElement(kind === "css" ? "link" : "script");
    el.id = id;
    const loaded = new Promise((resolve, reject) => {
      el.onload = resolve;
      el.onerror = () => reject(new Error("cannot load " + url));
    });
    el._loaded = loaded;
    if (kind === "css") { el.rel = "stylesheet"; el.href = url; } else { el.src = url; }
    document.head.appendChild(el);
    return loaded;
  }

  async function loadXterm() {
    const vendor = scriptBase + "vendor/";
    await loadOnce(vendor + "xterm.css", "css");
    if (!window.Terminal) await loadOnce(vendor + "xterm.js", "js");
    if (!window.FitAddon) await loadOnce(vendor + "addon-fit.js", "js");
  }

  class BlissngShell extends HTMLElement {
    connectedCallback() {
      if (this._started) return;
      this._started = true;
      this.style.display = this.style.display || "block";
      this._closedForGood = false;
      this._retry = 0;
      this.status = {};
      loadXterm().then(() => this._setup()).catch((err) => this._fail(String(err)));
    }

    disconnectedCallback() {
      this._closedForGood = true;
      if (this._ws) this._ws.close();
      if (this._resizeObserver) this._resizeObserver.disconnect();
    }

    get session() { return this.getAttribute("session"); }
    get mode() {
      return this.getAttribute("view-key") ? "view" : this.getAttribute("mode") || "control";
    }
    get consoleId() { return this._consoleId; }

    _storageKey() { return "blissng-console:" + this.session; }

    _setup() {
      const Terminal = window.Terminal;
      const FitAddon = window.FitAddon.FitAddon;
      this.term = new Terminal({
        convertEol: false,
        cursorBlink: true,
        scrollback: 5000,
        fontFamily: "DejaVu Sans Mono, Menlo, Consolas, monospace",
        fontSize: 14,
        lineHeight: 1.15,
        theme: { background: "#1e1e1e" },
      });
      this.fit = new FitAddon();
      this.term.loadAddon(this.fit);
      const host = document.createElement("div");
      host.className = "blissng-terminal";
      host.style.width = "100%";
      host.style.height = "100%";
      this.appendChild(host);
      this.term.open(host);
      this._safeFit();
      this.term.onData((data) => this._send(["stdin", data]));
      this.term.onResize(({ rows, cols }) => this._send(["resize", rows, cols]));
      this._resizeObserver = new ResizeObserver(() => this._safeFit());
      this._resizeObserver.observe(this);
      this._consoleId = this.getAttribute("console") || sessionStorage.getItem(this._storageKey());
      this._connect();
    }

    _safeFit() {
      try { this.fit.fit(); } catch (e) { /* not visible yet */ }
    }

    _url() {
      const base = new URL(this.getAttribute("server") || window.location.origin);
      const proto = base.protocol === "https:" ? "wss:" : "ws:";
      const params = new URLSearchParams({
        mode: this.mode,
        rows: String(this.term.rows),
        cols: String(this.term.cols),
      });
      if (this._consoleId) params.set("console", this._consoleId);
      const token = this.getAttribute("token");
      if (token) params.set("token", token);
      const viewKey = this.getAttribute("view-key");
      if (viewKey) params.set("view", viewKey);
      return `${proto}//${base.host}/ws/console/${encodeURIComponent(this.session)}?${params}`;
    }

    _connect() {
      const ws = new WebSocket(this._url());
      this._ws = ws;
      ws.onmessage = (event) => this._onMessage(JSON.parse(event.data));
      ws.onclose = (event) => this._onClose(event);
    }

    _send(message) {
      if (this._ws && this._ws.readyState === WebSocket.OPEN && this.mode !== "view") {
        this._ws.send(JSON.stringify(message));
      }
    }

    /** Close this console on the server (its running command is cancelled). */
    closeConsole() {
      this._closedForGood = true;
      sessionStorage.removeItem(this._storageKey());
      if (this._ws && this._ws.readyState === WebSocket.OPEN) {
        this._ws.send(JSON.stringify(["close"]));
      }
    }

    _onMessage(message) {
      const [kind, payload] = message;
      if (kind === "stdout") {
        this.term.write(payload);
      } else if (kind === "hello") {
        this._retry = 0;
        this._consoleId = payload.console;
        if (this.mode === "control") sessionStorage.setItem(this._storageKey(), payload.console);
        this.setAttribute("data-console", payload.console);
        this.term.reset();  // the scrollback replay follows
        this._status(payload);
      } else if (kind === "status") {
        this._status(payload);
      }
    }

    _status(status) {
      this.status = status;
      this.setAttribute("data-busy", status.busy ? "1" : "0");
      this.dispatchEvent(new CustomEvent("blissng-status", { detail: status, bubbles: true }));
    }

    _onClose(event) {
      this.dispatchEvent(new CustomEvent("blissng-closed", {
        detail: { code: event.code, reason: event.reason }, bubbles: true,
      }));
      if (this._closedForGood) return;
      if (event.code === 4410 || event.code === 1000) {
        sessionStorage.removeItem(this._storageKey());
        this.term.write(`\r\n\x1b[33m[${event.reason || "console closed"}: press Enter for a new console]\x1b[0m\r\n`);
        const sub = this.term.onData(() => {
          sub.dispose();
          this._consoleId = null;
          this._connect();
        });
        return;
      }
      if (event.code >= 4400 && event.code < 4500 && event.code !== 4429) {
        this._fail(`${event.reason} (code ${event.code})`);
        return;
      }
      // network blip, server restart, too busy: the console lives on the server; reattach
      const delay = Math.min(10000, 250 * 2 ** this._retry++);
      this.term.write(`\r\n\x1b[33m[disconnected${event.reason ? ": " + event.reason : ""}; reconnecting]\x1b[0m\r\n`);
      setTimeout(() => this._connect(), delay);
    }

    _fail(text) {
      this._closedForGood = true;
      if (this.term) {
        this.term.write(`\r\n\x1b[31m[${text}]\x1b[0m\r\n`);
      } else {
        this.textContent = text;
      }
    }
  }

  customElements.define("blissng-shell", BlissngShell);
})();
