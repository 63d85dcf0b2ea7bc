-- Identity broker (issue 6): what the upstream says about the person beyond the
-- profile (ProConnect's uid, idp_id, siren, organizational_unit,
-- belonging_population, roles, custom ...), as a JSON object refreshed at each login,
-- so administrators can see who vouched for the person and as what.
ALTER TABLE federated_links ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
-- A link offer keeps them too, for the link it may become.
ALTER TABLE upstream_link_offers ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
