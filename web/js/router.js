// Client routes over the History API. The server answers every path
// without a file extension with index.html, so deep links and reloads work.

export class Router {
  /**
   * @param {Array<[string, object]>} routes pattern (`/u/:id`) and route
   * @param {(route, params, url) => void} onRoute
   */
  constructor(routes, onRoute) {
    this.routes = routes.map(([pattern, route]) => ({ ...route, pattern, regex: compile(pattern) }));
    this.onRoute = onRoute;
    window.addEventListener('popstate', () => this.resolve());
    document.addEventListener('click', (e) => this.intercept(e));
  }

  /** Goes to a client path (adds a history entry unless `replace`). */
  navigate(path, { replace = false } = {}) {
    if (path === location.pathname + location.search) return this.resolve();
    history[replace ? 'replaceState' : 'pushState']({}, '', path);
    return this.resolve();
  }

  resolve() {
    const url = new URL(location.href);
    for (const route of this.routes) {
      const m = route.regex.exec(url.pathname);
      if (m) return this.onRoute(route, m.groups || {}, url);
    }
    return this.onRoute(null, {}, url);
  }

  intercept(e) {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
    if (a.pathname.startsWith('/api/')) return;
    e.preventDefault();
    this.navigate(a.pathname + a.search);
  }
}

function compile(pattern) {
  const source = pattern
    .split('/')
    .map((part) => (part.startsWith(':') ? `(?<${part.slice(1)}>[^/]+)` : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
}
