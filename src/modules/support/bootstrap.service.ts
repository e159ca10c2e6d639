import type { AppContext } from '../../context.js';
import type { Language } from '../../lib/languages.js';
import { recordAudit } from '../audit/audit.service.js';
import { sendActivation } from '../organization/dependencies.js';
import { isEmailTaken, organizationErrors } from '../organization/organization.errors.js';
import { refuseHeldAddress } from '../email-change/held-address.js';
import type { CliOrigin } from './cli-origin.js';
import { createOrganizationInTx, creationConflict, type CreateOrganizationInput } from './support.service.js';

/**
 * Operator bootstrap (the CLI): the very first support user, and organisations created from a
 * terminal. The activation link is returned for the operator to hand over, and the activation
 * mail is queued as well (delivered by the server's mail worker).
 */

type Ctx = Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>;

export async function createSupportUser(
  ctx: Ctx,
  input: { email: string; name: string; language?: Language | undefined },
  origin: CliOrigin,
): Promise<{ userId: string; activationLink: string; expiresAt: Date }> {
  try {
    return await ctx.db.$transaction(async (tx) => {
      const user = await tx.user.create({
        data: {
          email: input.email,
          name: input.name,
          language: input.language ?? null,
          organizationId: null,
          roles: ['SUPPORT'],
          status: 'INVITED',
          createdAt: ctx.clock.now(),
        },
        select: { id: true, email: true, name: true, language: true },
      });
      await refuseHeldAddress(tx, ctx.clock, user);
      const activation = await sendActivation(tx, ctx, { user, organizationName: null, actorUserId: null, by: 'cli' });
      await recordAudit(tx, ctx.clock, {
        type: 'user.invited',
        subjectUserId: user.id,
        meta: origin.meta,
        details: { roles: ['SUPPORT'], via: origin.by, email: user.email, name: user.name },
      });
      return { userId: user.id, activationLink: activation.link, expiresAt: activation.expiresAt };
    });
  } catch (err) {
    if (isEmailTaken(err)) throw organizationErrors.email_taken();
    throw err;
  }
}

export async function createOrganizationFromCli(
  ctx: Ctx,
  input: CreateOrganizationInput,
  origin: CliOrigin,
): Promise<{ organizationId: string; administratorId: string; activationLink: string }> {
  try {
    return await ctx.db.$transaction(async (tx) => {
      const created = await createOrganizationInTx(tx, ctx, input, { actorUserId: null, meta: origin.meta, via: origin.by });
      return { organizationId: created.organization.id, administratorId: created.administrator.id, activationLink: created.activationLink };
    });
  } catch (err) {
    throw creationConflict(err) ?? err;
  }
}
