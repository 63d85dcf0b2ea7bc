/* DGE Identity – amélioration progressive de la page d'inscription.
   La page fonctionne entièrement sans ce script ; il ajoute :
   - la vérification en direct des règles de mot de passe ;
   - l'affichage du champ « Nom de votre organisme » seulement quand la case est cochée ;
   - une case « Afficher les mots de passe » ;
   - un champ de recherche qui filtre la liste des organismes ;
   - le focus sur le récapitulatif des erreurs. */
(function () {
  "use strict";

  function fold(text) {
    return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  function valueOf(id) {
    var el = document.getElementById(id);
    return el ? el.value.trim() : "";
  }

  // The pieces of the person's own data a password must not contain, as the server
  // computes them (dge-registry, PasswordContext::pieces): the login, each word of the
  // names, the email's local part and each of its words, all of 3 characters or more.
  function personalPieces() {
    function words(s) {
      return s.split(/[^\p{L}\p{N}]+/u).map(function (w) { return w.toLowerCase(); })
        .filter(function (w) { return Array.from(w).length >= 3; });
    }
    var pieces = [];
    var login = valueOf("login").toLowerCase();
    if (Array.from(login).length >= 3) { pieces.push(login); }
    pieces = pieces.concat(words(valueOf("given_name")), words(valueOf("family_name")));
    var email = valueOf("email");
    var at = email.lastIndexOf("@");
    var local = at === -1 ? "" : email.slice(0, at);
    pieces = pieces.concat(words(local));
    if (Array.from(local).length >= 3) { pieces.push(local.toLowerCase()); }
    return pieces;
  }

  function containsPersonal(password) {
    var lower = password.toLowerCase();
    var folded = fold(password);
    return personalPieces().some(function (p) {
      return lower.indexOf(p) !== -1 || folded.indexOf(fold(p)) !== -1;
    });
  }

  function ruleCheck(text) {
    var t = text.toLowerCase();
    var min = /(\d+)\s*caract/.exec(t);
    if (t.indexOf("spéciau") !== -1 || t.indexOf("special") !== -1) {
      return function (v) { return /[^\p{L}\p{N}\s]/u.test(v); };
    }
    if (t.indexOf("minuscule") !== -1) {
      return function (v) { return /\p{Ll}/u.test(v); };
    }
    if (t.indexOf("majuscule") !== -1) {
      return function (v) { return /\p{Lu}/u.test(v); };
    }
    if (t.indexOf("chiffre") !== -1) {
      return function (v) { return /[0-9]/.test(v); };
    }
    if (t.indexOf("votre login") !== -1 && document.getElementById("login")) {
      return function (v) { return v !== "" && !containsPersonal(v); };
    }
    // The last rule (not a common or guessable password) needs zxcvbn, which only the
    // server runs: its state stays neutral until the form is sent.
    if (min) {
      var n = parseInt(min[1], 10);
      return function (v) { return Array.from(v).length >= n; };
    }
    return null;
  }

  function setupRules() {
    var password = document.getElementById("password");
    var box = document.getElementById("password-rules");
    if (!password || !box) { return; }
    var items = box.querySelectorAll("li.rule");
    var rules = [];
    Array.prototype.forEach.call(items, function (li) {
      var state = li.querySelector(".rule-state");
      var label = li.firstChild ? li.firstChild.textContent : li.textContent;
      var check = ruleCheck(label);
      if (check && state) { rules.push({ li: li, state: state, check: check }); }
    });
    function update() {
      var v = password.value;
      rules.forEach(function (r) {
        var ok = r.check(v);
        r.li.classList.toggle("rule-met", v !== "" && ok);
        r.li.classList.toggle("rule-unmet", v !== "" && !ok);
        r.state.textContent = v === "" ? "" : (ok ? " (respectée)" : " (non respectée)");
      });
    }
    password.addEventListener("input", update);
    ["login", "given_name", "family_name", "email"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.addEventListener("input", function () { if (password.value !== "") { update(); } }); }
    });
    if (password.value !== "") { update(); }
  }

  function setupOrganisation() {
    var box = document.getElementById("organisation_missing");
    var group = document.getElementById("proposed-organisation-group");
    var input = document.getElementById("proposed_organisation");
    if (!box || !group || !input) { return; }
    function update() {
      var show = box.checked || input.value !== "" || input.getAttribute("aria-invalid") === "true";
      group.classList.toggle("js-hidden", !show);
      box.setAttribute("aria-expanded", show ? "true" : "false");
    }
    box.addEventListener("change", function () {
      update();
      if (box.checked) { input.focus(); }
    });
    update();
  }

  function setupShowPasswords() {
    var password = document.getElementById("password");
    var confirmation = document.getElementById("password_confirmation");
    if (!password || !confirmation) { return; }
    var wrap = document.createElement("div");
    wrap.className = "field field-checkbox";
    var box = document.createElement("input");
    box.type = "checkbox";
    box.id = "show-passwords";
    var label = document.createElement("label");
    label.htmlFor = "show-passwords";
    label.textContent = "Afficher les mots de passe";
    wrap.appendChild(box);
    wrap.appendChild(label);
    confirmation.parentNode.parentNode.insertBefore(wrap, confirmation.parentNode.nextSibling);
    box.addEventListener("change", function () {
      var type = box.checked ? "text" : "password";
      password.type = type;
      confirmation.type = type;
    });
    var form = password.form;
    if (form) {
      form.addEventListener("submit", function () {
        password.type = "password";
        confirmation.type = "password";
      });
    }
  }

  // A search box above the organisation list: options that do not match are hidden
  // (the list itself stays a plain <select>, so the form posts the same thing).
  function setupOrganisationSearch() {
    var select = document.getElementById("organisation_id");
    if (!select) { return; }
    var wrap = document.createElement("div");
    wrap.className = "field organisation-search";
    var label = document.createElement("label");
    label.htmlFor = "organisation-search";
    label.textContent = "Rechercher un organisme dans la liste";
    var input = document.createElement("input");
    input.type = "search";
    input.id = "organisation-search";
    input.autocomplete = "off";
    input.setAttribute("aria-controls", "organisation_id");
    input.setAttribute("aria-describedby", "organisation-search-count");
    var count = document.createElement("p");
    count.className = "hint";
    count.id = "organisation-search-count";
    count.setAttribute("aria-live", "polite");
    wrap.appendChild(label);
    wrap.appendChild(input);
    wrap.appendChild(count);
    var field = select.parentNode;
    field.parentNode.insertBefore(wrap, field);
    var options = Array.prototype.filter.call(select.options, function (o) { return o.value !== ""; });
    function update() {
      var words = fold(input.value).split(/\s+/).filter(function (w) { return w !== ""; });
      var shown = 0;
      options.forEach(function (o) {
        var name = fold(o.textContent);
        var ok = words.every(function (w) { return name.indexOf(w) !== -1; });
        o.hidden = !ok && !o.selected;
        if (ok) { shown += 1; }
      });
      count.textContent = words.length === 0 ? "" :
        (shown === 0 ? "Aucun organisme ne correspond." :
          shown === 1 ? "1 organisme correspond." : shown + " organismes correspondent.");
    }
    input.addEventListener("input", update);
    // Enter in the search box must not post the sign-up form.
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); select.focus(); }
    });
  }

  function focusSummary() {
    var summary = document.getElementById("error-summary");
    if (summary) { summary.focus(); }
  }

  function init() {
    setupRules();
    setupOrganisation();
    setupOrganisationSearch();
    setupShowPasswords();
    focusSummary();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
