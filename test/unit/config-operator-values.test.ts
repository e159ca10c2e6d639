import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { PRODUCTION_ENV } from '../helpers/production-env.js';

// Operator review, session 31: values that start the service but cannot work as configured.
// .env.example: "A bad value stops the start (exit code 78) with a message naming the variable."
t.test('REDIS_URL: a database index Redis cannot select stops the start naming the variable', async (t) => {
  // /abc: ioredis sends SELECT NaN after the server started listening; the process dies with a raw ReplyError.
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, REDIS_URL: 'redis://127.0.0.1:6379/abc' }), ConfigError);
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, REDIS_URL: 'redis://127.0.0.1:6379/abc' }), /REDIS_URL/);
});

t.test('MAIL_FROM: a value without an address stops the start naming the variable', async (t) => {
  // Accepted today: every mail then goes out with MAIL FROM:<> and an empty From: header.
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, MAIL_FROM: 'not an address' }), /MAIL_FROM/);
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, MAIL_FROM: 'Webshop' }), /MAIL_FROM/);
  t.ok(loadConfig({ ...PRODUCTION_ENV, MAIL_FROM: 'Webshop <no-reply@shop.example.com>' }), 'the documented form loads');
});

t.test('JWT_ISSUER: production accepts only an https URL (.env.example: "an explicit https APP_BASE_URL and JWT_ISSUER")', async (t) => {
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, JWT_ISSUER: 'ftp://x' }), /JWT_ISSUER/);
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, JWT_ISSUER: 'http://auth.example.com' }), /JWT_ISSUER/);
});

t.test('APP_BASE_URL: a user name or password in it stops the start (every mail link would carry it)', async (t) => {
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, APP_BASE_URL: 'https://user:pw@shop.example.com' }), /APP_BASE_URL/);
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, APP_BASE_URL: 'https://user@shop.example.com' }), /APP_BASE_URL/);
});

t.test('numbers are whole numbers in decimal digits: PORT=0x10 or 1e3 stops the start (operator review, session 31)', async (t) => {
  for (const value of ['0x10', '1e3', '12.0', '-1', '+5']) {
    t.throws(() => loadConfig({ NODE_ENV: 'test', PORT: value }), /PORT/, JSON.stringify(value));
  }
  t.equal(loadConfig({ NODE_ENV: 'test', PORT: ' 3917 ' }).port, 3917, 'spaces around are forgiven');
  t.equal(loadConfig({ NODE_ENV: 'test', PORT: '' }).port, 3000, 'empty: the default');
});
