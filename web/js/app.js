// The shared application context: the router, the socket, the signed-in
// user. Filled in by main.js; views import it instead of each other.

export const app = {
  /** @type {import('./router.js').Router|null} */
  router: null,
  /** @type {import('./ws.js').Socket|null} */
  socket: null,
  /** Goes to a client path. */
  navigate(path, opts) {
    return this.router.navigate(path, opts);
  },
};
