// Lint rules: typescript-eslint's recommended set; formatting is prettier's job.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coffre-data/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The web console's script runs in the browser (no bundler, no module system).
    files: ['src/api/admin/console/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: Object.fromEntries(
        [
          'document',
          'window',
          'location',
          'fetch',
          'URL',
          'URLSearchParams',
          'Node',
          'XMLHttpRequest',
          'TextEncoder',
          'atob',
          'btoa',
          'confirm',
          'setTimeout',
          'setInterval',
          'clearInterval',
          'console',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
);
