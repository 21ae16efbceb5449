// ES module imported by throw.js: its frames carry file:// URLs.
export function explode() {
  throw new Error('from an ES module'); // @esm
}
explode();
