import { tokenFromLink } from '../../helpers/accounts.js';
import { mailsTo, type AdminWorld } from '../organization/helpers.js';

/** E-mail moves and their undo, the way the API allows them (email-change tests and reviews). */

export async function signedInMember(w: AdminWorld, email = 'jon@alpha.test', organizationId = w.orgA.id) {
  const member = await w.member(organizationId, { email, name: 'Jon Doe' });
  return { ...member, token: await w.tokenFor(member.user) };
}

/** The token of the last `template` mail to `address`, from its link to `path`. */
export async function lastLink(w: AdminWorld, address: string, template: string, path: string): Promise<string> {
  const mail = (await mailsTo(w.app, address)).filter((m) => m.template === template).at(-1);
  if (!mail) throw new Error(`no ${template} mail to ${address}`);
  return tokenFromLink(mail.textBody, path);
}

/** Moves the account of `token` to `to`: the password, then the link in the new mailbox. */
export async function moveTo(w: AdminWorld, token: string, password: string, to: string): Promise<void> {
  const asked = await w.request({ url: '/v1/me/email', token, body: { email: to, password } });
  if (asked.status !== 202) throw new Error(`change refused: ${asked.status}`);
  const confirmed = await w.request({ url: '/v1/email-change/confirm', body: { token: await lastLink(w, to, 'email_change_confirm', '/confirm-email') } });
  if (confirmed.status !== 200) throw new Error(`confirmation refused: ${confirmed.status}`);
}

export const undo = (w: AdminWorld, token: string) => w.request({ url: '/v1/email-change/undo', body: { token } });
export const undoLink = (w: AdminWorld, address: string) => lastLink(w, address, 'email_changed', '/undo-email-change');
