import nodemailer from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import type { Config } from '../../config.js';

/** One mail leaving the outbox. `id` is the outbox row id; it becomes the stable Message-ID. */
export type OutgoingMail = { id: string; to: string; subject: string; text: string; html: string };

/**
 * Where the delivery worker hands mails to. `send` resolves once the receiving server accepted
 * the message and rejects otherwise (the worker then retries later).
 */
export type MailTransport = {
  readonly kind: 'smtp' | 'log' | (string & {});
  send(mail: OutgoingMail): Promise<void>;
  close(): Promise<void>;
};

type Log = { info(obj: object, msg: string): void };

/** SMTP via nodemailer (one connection per mail: mail volume is low and outages heal on their own). */
export function createSmtpTransport(config: Pick<Config, 'mailFrom'>, smtpUrl: string): MailTransport {
  const options: SMTPTransport.Options = {
    url: smtpUrl,
    // Bounded so a hanging server cannot hold a claimed mail past its lease (see mail.worker.ts).
    // Values in the URL's query string (?connectionTimeout=...) take precedence.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
    dnsTimeout: 10_000,
  };
  const transporter = nodemailer.createTransport(options, { from: config.mailFrom });
  const domain = /@([^>\s]+)>?\s*$/.exec(config.mailFrom)?.[1] ?? 'webshop-auth.invalid';
  return {
    kind: 'smtp',
    async send(mail) {
      await transporter.sendMail({
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        // Stable per outbox row: if a crash makes us send a mail twice, clients can tell.
        messageId: `<${mail.id}@${domain}>`,
        // Sent by the service, not by a person (RFC 3834 section 5): out-of-office and other
        // auto-replies do not answer it; Exchange/Outlook read their own header for the same.
        headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All' },
      });
    },
    async close() {
      transporter.close();
    },
  };
}

/**
 * Without SMTP_URL (development and tests only; production refuses to start without it) mails are
 * written to the log. The body, which holds links with tokens, only in development.
 */
export function createLogTransport(config: Pick<Config, 'env'>, log: Log): MailTransport {
  return {
    kind: 'log',
    async send(mail) {
      const body = config.env === 'development' ? { body: mail.text } : {};
      log.info({ mail: { id: mail.id, to: mail.to, subject: mail.subject, ...body } }, 'mail not sent (SMTP_URL is not set): written to the log');
    },
    async close() {},
  };
}

export function createMailTransport(config: Pick<Config, 'smtpUrl' | 'mailFrom' | 'env'>, log: Log): MailTransport {
  return config.smtpUrl ? createSmtpTransport(config, config.smtpUrl) : createLogTransport(config, log);
}
