// Lint setup: type-aware TypeScript rules plus the layering rules of docs/architecture.md.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

// Each zone forbids `target` (the importing layer) from importing `from`.
// This table is the enforced form of the import rules in docs/architecture.md.
const layer = (name) => `./src/${name}`;
const everythingBut = (...allowed) =>
  ['lib', 'core', 'protocol', 'store', 'scheduler', 'policy', 'reconcile', 'pki', 'api', 'runtime', 'agent', 'manager', 'cli']
    .filter((l) => !allowed.includes(l))
    .map(layer);

const zones = [
  { target: layer('lib'), from: everythingBut('lib'), message: 'lib imports nothing internal.' },
  { target: layer('core'), from: everythingBut('core', 'lib'), message: 'core imports only lib.' },
  { target: layer('protocol'), from: everythingBut('protocol', 'core', 'lib'), message: 'protocol imports only core (and lib).' },
  { target: layer('scheduler'), from: everythingBut('scheduler', 'core', 'lib', 'store'), message: 'scheduler is pure: core, lib and type-only store.' },
  { target: layer('policy'), from: everythingBut('policy', 'core', 'lib', 'store'), message: 'policy is pure: core, lib and type-only store.' },
  { target: layer('pki'), from: everythingBut('pki', 'core', 'lib'), message: 'pki depends only on core and lib.' },
  { target: layer('store'), from: everythingBut('store', 'core', 'lib'), message: 'store depends only on core and lib.' },
  { target: layer('runtime'), from: everythingBut('runtime', 'core', 'lib', 'protocol'), message: 'runtime knows nothing of the control plane.' },
  { target: layer('agent'), from: everythingBut('agent', 'core', 'lib', 'protocol', 'runtime'), message: 'agent only speaks the protocol: no store, scheduler, reconcile or api.' },
  { target: layer('api'), from: [layer('scheduler'), layer('reconcile'), layer('agent'), layer('manager'), layer('cli')], message: 'api writes desired state; reconcilers react to the store.' },
  { target: layer('reconcile'), from: [layer('api'), layer('agent'), layer('manager'), layer('cli'), layer('runtime')], message: 'reconcilers read and write the store only.' },
  { target: layer('manager'), from: [layer('cli')], message: 'manager is a library; only cli prints.' },
  { target: './web', from: everythingBut('protocol'), message: 'web imports only src/protocol.' },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'web/dist/**', 'scripts/**', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver': { node: { extensions: ['.ts', '.js'] } } },
    rules: {
      'import-x/no-restricted-paths': ['error', { zones }],
      'import-x/no-cycle': ['error', { maxDepth: 10 }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
    },
  },
  {
    // Pure layers: time and randomness are passed in, never read from the host.
    files: ['src/scheduler/**/*.ts', 'src/policy/**/*.ts', 'src/core/**/*.ts', 'src/protocol/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*'], message: 'pure layer: no node:* imports' }] }],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'pure layer: take time as a parameter' },
        { object: 'Math', property: 'random', message: 'pure layer: take randomness as a parameter' }],
    },
  },
);
