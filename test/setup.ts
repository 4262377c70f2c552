// Loaded by mocha before every test file (.mocharc.json). @peculiar/x509 needs the Reflect polyfill
// before it is first imported.
import 'reflect-metadata';
