// ink decides once, when it loads, whether it runs under CI (the CI / CONTINUOUS_INTEGRATION
// variables) and then paints only its last frame, which leaves a real terminal blank until quit.
// The dashboard is drawn only on a terminal (runTop falls back to plain lines otherwise), so those
// variables are hidden while ink loads and restored at once.
const keys = ['CI', 'CONTINUOUS_INTEGRATION'] as const;
const saved = keys.map((k) => process.env[k]);
for (const k of keys) delete process.env[k];
const ink = await import('ink');
keys.forEach((k, i) => {
  if (saved[i] !== undefined) process.env[k] = saved[i];
});

type Ink = typeof import('ink');
// Annotated so the declaration files name ink's own types, not its private dependencies'.
export const Box: Ink['Box'] = ink.Box;
export const render: Ink['render'] = ink.render;
export const Text: Ink['Text'] = ink.Text;
export const useApp: Ink['useApp'] = ink.useApp;
export const useInput: Ink['useInput'] = ink.useInput;
