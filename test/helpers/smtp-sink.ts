import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

/**
 * A real SMTP server inside the test process. The app's nodemailer transport talks SMTP to it
 * (SMTP_URL = sink.url), it collects what it accepted, and stop()/start() simulate an outage
 * (the port is kept, so the app's configuration stays valid).
 */
export type ReceivedMail = {
  from: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
  messageId: string | undefined;
  raw: string;
};

export type SmtpSink = {
  url: string;
  port: number;
  messages: ReceivedMail[];
  /** Messages addressed to `to` (case-insensitive). */
  to(address: string): ReceivedMail[];
  /** Resolves once at least `count` messages arrived (rejects after `timeoutMs`). */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  /**
   * From now on the server answers RCPT TO for this address with `reply` (default `550 5.1.1 No
   * such mailbox`); `null` accepts it again.
   */
  refuseRecipient(address: string, reply?: RcptReply | null): void;
  /**
   * While on, every message is refused after DATA with a reply quoting its first link (as spam
   * filters do): decoded (`true`), or `'raw'`: the text around it as it was on the wire
   * (quoted-printable: `token=3D`, soft line breaks), its line breaks turned into spaces.
   */
  rejectQuotingLinks(on: boolean | 'raw'): void;
  /**
   * While on, the reply to each message's DATA waits (a slow relay); off sends the waiting replies,
   * and the messages count as received from then on. `held()` counts the replies waiting.
   */
  holdReplies(on: boolean): void;
  held(): number;
  /** Closes the listener: connections are refused until start(). */
  stop(): Promise<void>;
  start(): Promise<void>;
  running(): boolean;
};

type TestLike = { teardown(fn: () => unknown): void };

/** An SMTP reply: its code and the text after it (with the enhanced status, e.g. `5.7.1 Relay access denied`). */
export type RcptReply = { code: number; text: string };

export async function startSmtpSink(t: TestLike): Promise<SmtpSink> {
  const messages: ReceivedMail[] = [];
  const refused = new Map<string, RcptReply>();
  let quoteAndReject: boolean | 'raw' = false;
  let holding = false;
  const waiting: (() => void)[] = [];
  let server: SMTPServer | undefined;
  let port = 0;

  const create = () =>
    new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      closeTimeout: 100,
      onRcptTo(address, _session, callback) {
        const reply = refused.get(address.address.toLowerCase());
        if (!reply) return callback();
        callback(Object.assign(new Error(reply.text), { responseCode: reply.code }));
      },
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          if (holding) waiting.push(() => accept());
          else accept();
        });
        const accept = () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          const link = /https?:\/\/\S+/.exec(raw.replace(/=\r?\n/g, ''))?.[0];
          if (quoteAndReject === 'raw') {
            const at = raw.indexOf('https://');
            const quoted = raw.slice(Math.max(0, at - 40), at + 160).replace(/\r?\n/g, '  ');
            return callback(Object.assign(new Error(`5.7.1 content rejected, offending text: ${quoted}`), { responseCode: 451 }));
          }
          if (quoteAndReject) return callback(Object.assign(new Error(`5.7.1 Rejected as spam: ${link ?? 'no link'}`), { responseCode: 554 }));
          simpleParser(raw)
            .then((parsed) => {
              messages.push({
                from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
                to: session.envelope.rcptTo.map((r) => r.address),
                subject: parsed.subject ?? '',
                text: parsed.text ?? '',
                html: typeof parsed.html === 'string' ? parsed.html : '',
                messageId: parsed.messageId,
                raw,
              });
              callback();
            })
            .catch((err: Error) => callback(err));
        };
      },
    });

  const start = async () => {
    if (server) return;
    const s = create();
    s.on('error', () => undefined);
    s.listen(port, '127.0.0.1');
    await once(s.server, 'listening');
    port = (s.server.address() as AddressInfo).port;
    server = s;
  };

  const stop = async () => {
    const s = server;
    if (!s) return;
    server = undefined;
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  await start();
  t.teardown(stop);

  return {
    get url() {
      return `smtp://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    messages,
    to: (address) => messages.filter((m) => m.to.some((a) => a.toLowerCase() === address.toLowerCase())),
    async waitFor(count, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < count) {
        if (Date.now() > deadline) throw new Error(`smtp sink: expected ${count} messages, got ${messages.length}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return messages;
    },
    refuseRecipient: (address, reply = { code: 550, text: '5.1.1 No such mailbox' }) => {
      if (reply) refused.set(address.toLowerCase(), reply);
      else refused.delete(address.toLowerCase());
    },
    rejectQuotingLinks: (on) => {
      quoteAndReject = on;
    },
    holdReplies: (on) => {
      holding = on;
      if (!on) for (const reply of waiting.splice(0)) reply();
    },
    held: () => waiting.length,
    stop,
    start,
    running: () => server !== undefined,
  };
}
