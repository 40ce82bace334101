// The one entry point to @peculiar/x509: it loads the Reflect metadata polyfill the library needs (tsyringe) first.
//
// ES modules evaluate their imports in order, so the polyfill module runs before the library; every
// pki file imports the library through here, never directly.
import 'reflect-metadata';

export * as x509 from '@peculiar/x509';
