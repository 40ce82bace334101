// The protocol layer's public surface: API wire shapes and the session protocol.
export * from './api.js';
export * from './session.js';
export * from './managers.js';
export * from './access.js';
export * from './policy.js';
export * from './template.js';
