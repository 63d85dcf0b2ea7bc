/* DGE Identity – amélioration progressive de la page d'inscription.
   La page fonctionne entièrement sans ce script ; il ajoute :
   - la vérification en direct des règles de mot de passe ;
   - l'affichage du champ « Nom de votre organisme » seulement quand la case est cochée ;
   - une case « Afficher les mots de passe » ;
   - le focus sur le récapitulatif des erreurs. */
(function () {
  "use strict";

  function ruleCheck(text) {
    var t = text.toLowerCase();
    var min = /(\d+)\s*caract/.exec(t);
    if (t.indexOf("spéciau") !== -1 || t.indexOf("special") !== -1) {
      return function (v) { return /[^\p{L}\p{N}]/u.test(v); };
    }
    if (t.indexOf("minuscule") !== -1) {
      return function (v) { return /\p{Ll}/u.test(v); };
    }
    if (t.indexOf("majuscule") !== -1) {
      return function (v) { return /\p{Lu}/u.test(v); };
    }
    if (t.indexOf("chiffre") !== -1) {
      return function (v) { return /\p{Nd}/u.test(v); };
    }
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

  function focusSummary() {
    var summary = document.getElementById("error-summary");
    if (summary) { summary.focus(); }
  }

  function init() {
    setupRules();
    setupOrganisation();
    setupShowPasswords();
    focusSummary();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
