import type { FastifyRequest } from 'fastify';
import type { Role } from '../generated/prisma/enums.js';
import { commonErrors } from '../errors.js';

/** Who is calling: set by the authenticate hook from a verified access token and a live session. */
export type Actor = {
  userId: string;
  sessionId: string;
  organizationId: string | null;
  roles: Role[];
  amr: string[];
  /** False after the user removed their MFA: the session may then only enrol again. */
  mfaEnrolled: boolean;
};

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor | null;
  }
}

export function requireActor(request: FastifyRequest): Actor {
  if (!request.actor) throw commonErrors.unauthenticated();
  return request.actor;
}
