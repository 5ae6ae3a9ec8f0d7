// Shell quoting: a leaf module (no imports), so renderers, the remote layer and main.ts
// share the one helper without any of them importing the others.

/** Quote a string for bash or any POSIX shell (single quotes). */
export const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
