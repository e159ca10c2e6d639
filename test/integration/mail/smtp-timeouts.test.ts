import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { createSmtpTransport } from '../../../src/modules/mail/mail.transport.js';

/**
 * mail.transport.ts bounds nodemailer's waits so that a hanging server cannot hold a claimed mail
 * past its 10-minute lease (mail.worker.ts), where another instance would take it over and maybe
 * send it twice. The greeting waits for the shortest of greetingTimeout, what is left of
 * connectionTimeout (both 10 s here; nodemailer's own: 30 s and 2 min) and the idle socketTimeout
 * (30 s); SMTP_URL may set each (config.ts caps them at 60 s). Real seconds: a server that accepts
 * and never says hello.
 */
t.test('an SMTP server that accepts but never greets: the send gives up after 10 s, or after what SMTP_URL says (mutation review, session 22)', async (t) => {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const url = `smtp://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const mail = { id: '0192b5c4-0000-7000-8000-000000000001', to: 'someone@example.test', subject: 'hello', text: 'text', html: '<p>html</p>' };

  const timed = async (smtpUrl: string) => {
    const transport = createSmtpTransport({ mailFrom: 'Webshop <no-reply@webshop.test>' }, smtpUrl);
    const started = Date.now();
    const error = (await transport.send(mail).then(() => null, (err: unknown) => err)) as { code?: string; message?: string } | null;
    await transport.close();
    return { error, seconds: (Date.now() - started) / 1000 };
  };
  const [byDefault, fromUrl] = await Promise.all([timed(url), timed(`${url}?greetingTimeout=1000`)]);

  t.match(byDefault.error, { code: 'ETIMEDOUT', message: /Greeting never received/ }, 'the send fails as a greeting timeout');
  t.ok(byDefault.seconds >= 9.5 && byDefault.seconds < 25, `after 10 s, not after the idle socket's 30 (${byDefault.seconds} s)`);
  t.match(fromUrl.error, { code: 'ETIMEDOUT', message: /Greeting never received/ });
  t.ok(fromUrl.seconds >= 0.9 && fromUrl.seconds < 9, `SMTP_URL's greetingTimeout=1000 wins (${fromUrl.seconds} s)`);
});
