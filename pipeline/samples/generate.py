"""Deterministic generator of realistic call-center transcripts (JSONL), stdlib only.

Every person, account, order and address is invented: names come from a small fixed list,
accounts look like ACCT-1234, e-mail addresses use example.com and companies are fictional.

    python -m pipeline.samples.generate --count 300 --seed 7 --output pipeline/samples/calls.jsonl
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

DEFAULT_COUNT = 300
DEFAULT_SEED = 7
DEFAULT_OUTPUT = Path(__file__).with_name("calls.jsonl")
# Share of records written as one "text" block instead of speaker turns (both are valid input).
TEXT_SHARE = 0.15
MIN_TURNS, MAX_TURNS = 6, 30

FIRST = ["Maria", "James", "Aisha", "Tomas", "Priya", "Daniel", "Mei", "Olusegun", "Sofia", "Liam",
         "Hannah", "Kenji", "Fatima", "Lucas", "Grace", "Mateo", "Nadia", "Owen", "Yara", "Ethan"]
LAST = ["Alvarez", "Brooks", "Chen", "Dubois", "Eriksen", "Farouk", "Garcia", "Hughes", "Ivanova",
        "Johnson", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi"]
AGENTS = ["Jordan", "Sam", "Alex", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Devon", "Robin"]
COMPANIES = ["Northwind Connect", "Bluepeak Communications", "Harborline Telecom"]
STREETS = ["Maple Street", "Cedar Lane", "Orchard Road", "Willow Court", "Hillcrest Avenue", "Birch Way"]
CITIES = ["Springfield", "Riverton", "Fairview", "Lakewood", "Brookside", "Millbrook"]
PLANS = [("Basic 100", 39), ("Standard 300", 55), ("Plus 500", 70), ("Gigabit", 90)]
# Equipment a call is about; topics about orders and returns also cover handsets.
HOME_DEVICES = ["router", "modem", "gateway", "set-top box"]
ORDER_DEVICES = ["phone", "router", "tablet", "set-top box", "headset"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
CHANNELS = ["phone", "phone", "phone", "chat", "callback"]

# Topics: the customer's opening, clarifying and troubleshooting exchanges (agent, customer; a
# list is a chain of exchanges that only make sense together),
# resolutions and escalations (agent, customer), and topic follow-ups (customer, agent).
TOPICS: dict[str, dict[str, Any]] = {
    "billing_dispute": {"queue": "billing", "open": [
        "Hi, I'm calling about my bill. I was charged {amount} this month and it's usually {price}.",
        "Hello, there's a charge on my statement I don't recognize, something called a service fee for {amount}.",
        "Yes hi, my bill went up by {amount} and nobody told me anything about a price change."],
        "work": [
            ("Can you tell me which statement you're looking at, the one dated {month} {day}?", "Yes, that's the one, the {month} statement."),
            ("I see a one-time charge of {amount} labelled equipment fee. Did you add any equipment recently?", "No, I haven't added anything. I still have the same {device} I've had for two years."),
            ("It looks like your promotional discount ended on {month} {day}, which explains part of the increase.", "Nobody told me it was ending. I would have called earlier."),
            ("Did you make any changes to your plan in the last billing cycle?", "Not that I know of. Maybe my partner did, but I doubt it."),
            ("I'm going to compare this statement with the previous one so we can see exactly what changed.", "Okay, thank you, I'd really like to understand it."),
        ],
        "resolve": [("I've removed the {amount} charge and you'll see a credit on your next statement.", "Okay, that's what I was hoping for, thank you."),
                    ("I've reapplied a loyalty discount for the next twelve months, so your bill goes back to about {price}.", "That works for me, as long as it stays that way.")],
        "escalate": [("This charge needs a review by our billing disputes team. I've opened case {ticket} and they'll contact you within {days} business days.", "Alright, I'll wait for their call, but I'm not paying that part until it's sorted."),
                     ("I don't have the authority to reverse a charge this large, so I'm sending it to a supervisor with case number {ticket}.", "Fine. Can you make a note that I disputed it today?")],
        "follow": [("Will I get late fees if I only pay the part I agree with?", "No, while the dispute is open the disputed amount is on hold and no late fee applies."),
                   ("Can you send me a breakdown of the charges by email?", "Yes, I'll email an itemized statement to {email} right after this call.")]},
    "password_reset": {"queue": "accounts", "open": [
        "Hi, I can't log into my online account. It keeps saying my password is wrong.",
        "Hello, I got locked out of the app after too many attempts and the reset email never comes.",
        "Hi there, I need to reset my password but I don't have access to the old email anymore."],
        "work": [
            ("What email address is the account registered under?", "It should be {email}."),
            ("I see the account was locked after five failed attempts this morning. I can unlock it for you.", "Yes please, that was me trying different passwords."),
            ("Can you check your spam or junk folder for a message from {company}?", "Hold on... no, nothing in spam either."),
            ("I've just sent a six-digit verification code by text to the number on file. Can you read it back to me?", "Yes, I've got it, it's four seven one, nine two eight."),
            ("Are you using the app or the website when you try to log in?", "The app, on my phone. I updated it last week."),
        ],
        "resolve": [("The account is unlocked and I've sent a fresh reset link that's valid for thirty minutes.", "Okay, it came through this time. I'm setting the new password now."),
                    ("I've updated the email on file to {email} and sent the reset link there.", "Got it, and the new password works. Great.")],
        "escalate": [("Because the email on file can't be verified, our identity team has to approve the change. I've opened ticket {ticket}.", "Okay. Hopefully that doesn't take too long."),
                     ("The reset system is returning an error on my side too, so I've reported it to our web team under ticket {ticket}.", "Okay, so it's not just me. Please let me know when it's fixed.")],
        "follow": [("Do I need to log in again on my tablet too?", "Yes, the password change signs out every device, so you'll log in once on each."),
                   ("Can I turn on two-step verification while we're at it?", "Absolutely, it's under Settings, Security. I'd recommend it.")]},
    "shipping_delay": {"queue": "shipping", "devices": ORDER_DEVICES, "open": [
        "Hi, I ordered a new {device} on {month} {day} and it still hasn't arrived. The order number is {order}.",
        "Hello, my tracking hasn't updated in a week. It's order {order}.",
        "Hi, I was told my replacement {device} would be here in three days and it's been almost two weeks."],
        "work": [
            ("I see order {order} left our warehouse on {month} {day} with the carrier.", "Right, and then nothing after that."),
            ("The tracking shows it was held at the regional depot because of an incomplete address.", "That's strange, my address is {street_address}. It's always worked before."),
            ("Is there a safe place or a neighbour the courier could leave it with?", "Yes, they can leave it with the building office downstairs."),
            ("Can you confirm the delivery address we have: {street_address}, {city}?", "Yes, that's correct."),
            ("Let me check with the carrier's system to see whether it's been marked as lost.", "Sure, I'll hold."),
        ],
        "resolve": [("I've shipped a replacement by express delivery at no charge; it should arrive within two business days.", "Perfect, thank you, that helps a lot."),
                    ("The carrier confirms it's out for delivery tomorrow, and I've refunded the {amount} shipping fee.", "Good, at least I get the shipping back.")],
        "escalate": [("The parcel is marked as lost, so I've filed a claim with the carrier under reference {ticket}. Claims take up to {days} business days.", "That's a long time to be without a {device}."),
                     ("I need our logistics team to trace it. I've opened case {ticket} and flagged it as urgent.", "Okay. Please make sure someone actually calls me back.")],
        "follow": [("If the original arrives after the replacement, what do I do with it?", "Just refuse the delivery or use the prepaid return label we'll email you."),
                   ("Can I get text updates for the new shipment?", "Yes, I've turned on text notifications for the new tracking number.")]},
    "plan_upgrade": {"queue": "sales", "open": [
        "Hi, I'm on the {plan} plan and I'd like to upgrade. We're working from home a lot more now.",
        "Hello, I want to know what faster plans are available at my address.",
        "Hi, my kids are gaming and streaming at the same time and the internet can't keep up. What are my options?"],
        "work": [
            ("How many people and devices are usually online at the same time?", "About four people, and probably fifteen devices counting the TVs."),
            [("At your address we can offer {newplan} at {newprice} dollars a month.", "What's the difference in price compared to what I pay now?"),
             ("You currently pay {price} dollars, so the upgrade is {diff} dollars more per month.", "Hmm, okay. Is there a contract with that?"),
             ("There's no contract; you can change plans any time, and the first month is prorated.", "That sounds reasonable.")],
            ("Your current {device} supports the faster speeds, so no equipment change is needed.", "Oh good, I didn't want to reinstall everything."),
        ],
        "resolve": [("I've switched you to {newplan}. The new speed will be active within the hour, after a quick router restart.", "Great, I'll restart it as soon as we hang up."),
                    ("Done: {newplan} starts today and the price change shows on your next bill as a prorated amount.", "Perfect, thank you for explaining all that.")],
        "escalate": [("The upgrade needs a line check at your address first. I've booked a technician visit, reference {ticket}.", "Okay, as long as they can come on a weekday morning."),
                     ("Our system shows the upgrade is not yet available on your street, so I've put you on the priority list with reference {ticket}.", "That's disappointing, but please let me know when it is.")],
        "follow": [("Will my email address or phone number change?", "No, nothing changes except the speed and the monthly price."),
                   ("Can I go back to the old plan if I don't notice a difference?", "Yes, within thirty days with no fee.")]},
    "cancellation": {"queue": "retention", "open": [
        "Hi, I'd like to cancel my service. I'm moving to a place where you don't have coverage.",
        "Hello, I want to cancel. Honestly the price has gone up too much.",
        "Hi, I'm calling to close my account. I found a cheaper offer elsewhere."],
        "work": [
            ("I'm sorry to hear that. May I ask what the other provider is offering?", "It's about {amount} less per month for the same speed."),
            ("Before you decide, I can take {offer} dollars a month off your bill for the next twelve months.", "Hmm, that's closer. Let me think about it."),
            ("When would you like the service to end?", "At the end of the month, on the {nth_day} would be ideal."),
            ("You're still within your contract, so there's an early termination fee of {amount}.", "Really? Nobody mentioned that when I signed up."),
            ("You'll need to return the {device}; we'll send a prepaid box.", "Okay, I'll pack it up this week."),
        ],
        "resolve": [("I've scheduled the cancellation for the end of the billing cycle and waived the termination fee.", "Thank you, I appreciate that."),
                    ("I've applied the retention offer instead, and your account stays active at the lower price.", "Alright, you've convinced me to stay for now.")],
        "escalate": [("Waiving the termination fee needs a supervisor's approval, so I've sent a request under reference {ticket}.", "Okay, but I still want the cancellation to go through either way."),
                     ("Because the account has a pending balance, our accounts team must finalize it. Your reference is {ticket}.", "Fine, please email me when it's done.")],
        "follow": [("Will I get a final bill?", "Yes, a final prorated bill arrives about two weeks after the service ends."),
                   ("Do I keep my email address after cancelling?", "You can keep it for ninety days, and we'll remind you before it closes.")]},
    "technical_outage": {"queue": "tech_support", "open": [
        "Hi, my internet has been down since this morning. All the lights on the {device} are blinking.",
        "Hello, nothing works, no internet, no TV. Is there an outage in {city}?",
        "Hi, the connection keeps dropping every few minutes for the last three days."],
        "work": [
            ("I can see a reported outage affecting part of {city} since about seven this morning.", "Okay, so it's not my equipment then."),
            [("Could you unplug the {device} for thirty seconds and then plug it back in?", "Alright, it's unplugged... and plugged back in. The light is orange now."),
             ("Is the orange light solid or flashing?", "Solid orange. It was flashing green before.")],
            ("I'm running a line test from our side, this takes about a minute.", "Sure, no problem."),
            ("The test shows signal loss between the street cabinet and your home.", "So the problem is outside my home, not my equipment. Good to know."),
            ("Are the cables firmly connected at the wall socket?", "Let me check... yes, both are pushed in all the way."),
        ],
        "resolve": [("The outage has been fixed and your line test now passes. Can you check your connection?", "Yes, it's back! The light is green again."),
                    ("I've reset your line remotely and the connection is stable now. I'll also credit one day of service.", "Great, it's working. Thanks for the credit.")],
        "escalate": [("This needs a technician. The earliest appointment is {month} {day} between eight and noon, reference {ticket}.", "That's days away, but I'll take it if there's nothing sooner."),
                     ("Our network team is working on the area outage; the current estimate is within {days} hours. I've linked your account to incident {ticket}.", "Okay. Please text me when it's back.")],
        "follow": [("Will I get a credit for the days without service?", "Yes, a credit for each full day of outage is applied automatically to your next bill."),
                   ("Can I use my phone as a hotspot in the meantime without extra charges?", "Yes, I've added ten gigabytes of free mobile data until the repair is done.")]},
    "refund": {"queue": "billing", "devices": ORDER_DEVICES, "open": [
        "Hi, I returned my {device} three weeks ago and I still haven't received my refund.",
        "Hello, I was charged twice for the same order, {order}, and I'd like one of them refunded.",
        "Hi, I cancelled an add-on within the trial period but I was still charged {amount}."],
        "work": [
            ("I see the return was received at our warehouse on {month} {day}.", "Okay, so you have it. Where's my money?"),
            ("I can confirm two payments of {amount} for order {order}.", "Yes, that's exactly what I see on my bank statement."),
            ("Which card was used for the original payment, the one ending in {last4}?", "Yes, that's my debit card."),
            ("Refunds go back to the original payment method and can take five to seven business days.", "It's already been more than that."),
            ("Let me check whether the refund was approved or is still pending.", "Please do."),
        ],
        "resolve": [("I've issued the refund of {amount} to the card ending in {last4}; you'll see it within three to five business days.", "Okay, thank you. I'll keep an eye on it."),
                    ("The duplicate payment is reversed and the confirmation number is {ticket}.", "Perfect, I'll write that down.")],
        "escalate": [("The refund is stuck in an approval step I can't override, so I've escalated it to our payments team as {ticket}.", "This is really frustrating, but okay, please push it."),
                     ("I need the finance team to confirm the bank reversal. They'll reply within {days} business days on case {ticket}.", "Alright, as long as someone follows up.")],
        "follow": [("Will I get an email when the refund is sent?", "Yes, you'll get an email confirmation at {email} once it's processed."),
                   ("What if I don't see it after five days?", "Call us back with the reference number and we'll trace it with the bank.")]},
    "address_change": {"queue": "accounts", "open": [
        "Hi, I'm moving next month and I need to transfer my service to a new address.",
        "Hello, I need to update my billing address. I moved recently.",
        "Hi, I'm moving on {month} {day} and want to know if I can take my plan with me."],
        "work": [
            ("What's the new address?", "It's {street_address}, {city}."),
            ("Good news, we do have service at the new address, including your current {plan} plan.", "Oh great, that makes it easy."),
            ("Would you like the service at the old address to end on the same day?", "Yes, the same day please, {month} {day}."),
            ("Do you want me to update the billing address too, or only the service address?", "Both, please. I won't be at the old place anymore."),
            ("The new address needs an installation. Is a morning or afternoon appointment better?", "Morning, before noon if possible."),
        ],
        "resolve": [("Everything is set: the service moves on {month} {day} and a technician comes between eight and noon.", "Perfect, that works for me."),
                    ("Your billing address is updated and the next statement goes to the new address.", "Great, that was quick.")],
        "escalate": [("The new building needs a wiring survey before we can confirm the date. I've opened order {ticket} for that.", "Okay. I hope it's done before I move in."),
                     ("The address isn't found in our system, so our address team has to add it. Your reference is {ticket}.", "It's a new building, so that makes sense I guess.")],
        "follow": [("Is there a moving fee?", "No, moving your service is free for existing customers."),
                   ("Will my phone number stay the same after the move?", "Yes, we'll keep your number.")]},
    "payment_method": {"queue": "billing", "open": [
        "Hi, my card expired and my automatic payment failed. I'd like to update it.",
        "Hello, I want to switch from paying by card to direct debit from my bank account.",
        "Hi, I got a message that my payment was declined, but there's money on the card."],
        "work": [
            ("I see a failed payment on {month} {day} for {amount}.", "Yes, that was the expired card."),
            ("For security, please don't read the full card number to me; I'll send you a secure payment link by text.", "Okay, I've got the link. I'm entering the new card now."),
            ("The bank declined with a code that usually means the card was replaced.", "Oh, they sent me a new card last month, that must be it."),
            ("Would you like me to retry the payment of {amount} on the new card today?", "Yes please, I don't want a late fee."),
        ],
        "resolve": [("The new card is saved for automatic payments and the {amount} balance is paid.", "Great, thank you."),
                    ("Direct debit is set up and starts with your next bill; I've also waived the late fee.", "Thank you, that's very kind.")],
        "escalate": [("The payment system isn't accepting new cards right now, so I've logged ticket {ticket} and put a hold on late fees.", "Okay, I'll try the link again tomorrow."),
                     ("Switching to direct debit needs a signed mandate, which our payments team will email you. Reference {ticket}.", "Alright, I'll look out for it.")],
        "follow": [("When will the payment come out each month?", "On the {nth_day}, the same as your billing date."),
                   ("Will the failed payment affect my credit?", "No, we don't report a single failed payment that's settled.")]},
    "roaming_charges": {"queue": "billing", "open": [
        "Hi, I just got back from a trip and there's {amount} in roaming charges on my bill.",
        "Hello, I'm travelling abroad next week and I want to avoid a huge bill like last time.",
        "Hi, my phone used data abroad even though I thought roaming was off."],
        "work": [
            ("I see data usage abroad between {month} {day} and the following week.", "Yes, that was the trip. But I bought a travel pass."),
            ("The travel pass was activated a day after you arrived, so the first day was charged at standard rates.", "So I paid extra for one day? That's most of the bill."),
            ("Which countries are you travelling to?", "Portugal and then Spain for a few days."),
            ("Roaming was switched on at the network level on your line.", "I never knew there were two settings."),
        ],
        "resolve": [("As a one-time courtesy I've credited {amount} and added the travel pass for your next trip.", "That's great, thank you so much."),
                    ("I've added a daily travel pass that caps roaming at a fixed price per day.", "Perfect, that gives me peace of mind.")],
        "escalate": [("A credit this size must be approved by the billing team. I've sent it as case {ticket}.", "Okay, please make sure it's reviewed."),
                     ("The usage records need to be checked by the network team to confirm the dates. Case {ticket}.", "Fine, I'll wait to hear back.")],
        "follow": [("How do I check my roaming usage while I'm away?", "The app shows roaming usage under Usage, updated every few hours."),
                   ("Will I get a text when the pass is active?", "Yes, you'll get a welcome text when you connect to a network abroad.")]},
    "slow_internet": {"queue": "tech_support", "open": [
        "Hi, I'm paying for {plan} but I'm getting maybe a quarter of that speed.",
        "Hello, my internet is really slow in the evenings, video calls keep freezing.",
        "Hi, the Wi-Fi upstairs is almost unusable, it's fine right next to the {device}."],
        "work": [
            ("Are you testing over Wi-Fi or with a cable plugged into the {device}?", "Over Wi-Fi, on my laptop."),
            ("Could you run a speed test with a cable connected, if you have one?", "Okay, with the cable it's much better, almost the full speed."),
            ("Where is the {device} placed in the house?", "It's in a cabinet in the living room, behind the TV."),
            ("I can see your {device} is running old firmware. I'll push an update now; it will restart.", "Okay, the lights are flashing... and it's back."),
            ("I'm changing your Wi-Fi channel to a less crowded one remotely.", "Alright, it dropped for a second but it's back now."),
        ],
        "resolve": [("Your speed test now shows close to the full {plan} speed. The firmware update and channel change fixed it.", "Yes, it's way better. Video is smooth now."),
                    ("I'm sending a free mesh extender for the upstairs rooms; it should arrive in two days.", "Great, that should solve the upstairs problem.")],
        "escalate": [("The line itself shows errors, so a technician needs to check the wiring. Appointment reference {ticket}.", "Okay, I'll watch for the appointment confirmation."),
                     ("There's congestion in your area in the evenings; I've reported it to network planning as {ticket}.", "That's frustrating, but thanks for reporting it.")],
        "follow": [("Is there a way to see which devices use the most bandwidth?", "Yes, the app shows connected devices and their usage under My Network."),
                   ("Should I move the {device} out of the cabinet?", "Yes, an open spot up high gives a much stronger signal.")]},
}

# How a call ends, with its weight, named by the insights resolution it shows. Each ending says
# so in a plain phrase ("that's resolved", "I'll escalate this", "we'll call you back tomorrow",
# "still not resolved") that a rule-based reader can find.
OUTCOMES = {"resolved": 0.5, "escalated": 0.2, "callback_scheduled": 0.15, "unresolved": 0.15}
RESOLVED_MARKS = ["So that's resolved.", "That's resolved for you now."]
ESCALATED_MARKS = ["I'll escalate this so the right team looks at it.",
                   "I'm going to escalate this to a specialist team."]
CALLBACKS = [("I need to check this with a colleague first, so we'll call you back tomorrow "
              "morning with an answer.", "Okay, I'll expect your call tomorrow then."),
             ("I can't finish this on this call, but I've scheduled a callback: we'll call you "
              "back tomorrow afternoon.", "Alright, talk to you tomorrow.")]
UNRESOLVED = [("I'm sorry, there's nothing more I can do about this today, and I don't have a "
               "fix for it yet.", "So it's still not resolved. That's really disappointing."),
              ("Unfortunately this stays unresolved for now; no solution is available at the "
               "moment.", "That's frustrating. I'll call again if nothing changes.")]

GREETINGS = ["Thank you for calling {company}, my name is {agent}. How can I help you today?",
             "Good {daypart}, {company} support, this is {agent} speaking. What can I do for you?",
             "Hi, you've reached {company}. I'm {agent}. How can I help?"]
VERIFY = [("I can help with that. Can I have your account number, please?", "Sure, it's {acct}."),
          ("Happy to look into it. Could you confirm the account number and the name on the account?", "It's {acct}, and the name is {name}.")]
VERIFY_MORE = [("Thank you. And for security, can you confirm the postcode on the account?", "Yes, it's {postcode}."),
               ("Thanks, {first}. Can you confirm the email address on file?", "It's {email}.")]
HOLD = [("Let me pull up the details, it will take a moment. Is it okay if I put you on a short hold?", "Yes, that's fine."),
        ("Bear with me while I check a few things in our system.", "Sure, take your time.")]
GENERIC_FOLLOW = [("Will I get a confirmation of what we did today?", "Yes, you'll receive an email summary at {email} within the hour."),
                  ("Can you give me a reference number, just in case?", "Of course, your reference is {ticket}.")]
CLOSE_AGENT = ["Is there anything else I can help you with today?", "Anything else I can do for you, {first}?"]
CLOSE_CUSTOMER = ["No, that's everything. Thanks for your help.", "No, that's all. Thank you, {agent}.",
                  "That's it for now, thanks."]
GOODBYE = ["Thank you for calling {company}. Have a great day!", "You're welcome, {first}. Take care and goodbye."]
FILLERS = ["Okay, ", "Yeah, ", "Um, ", "Right, "]
# Openings a filler may precede; other openings (names, numbers) keep their capital letter.
LOWERABLE = {"Yes", "No", "Okay", "That", "The", "It", "It's", "So", "Sure", "Oh", "Please", "Hmm",
             "Great", "Perfect", "Fine", "Alright", "What", "Is", "Both", "Morning", "Over", "Not", "Thank"}


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _context(rng: random.Random, index: int, devices: list[str]) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    day = rng.randint(2, 28)
    (plan, price), (newplan, newprice) = sorted(rng.sample(PLANS, 2), key=lambda p: p[1])
    return {
        "first": first, "name": f"{first} {last}", "agent": rng.choice(AGENTS),
        "company": rng.choice(COMPANIES), "acct": f"ACCT-{rng.randint(1000, 9999)}",
        "order": f"ORD-{rng.randint(10000, 99999)}", "ticket": f"TCK-{rng.randint(100000, 999999)}",
        "amount": f"${rng.randint(8, 240)}.{rng.choice(['00', '49', '99', '15', '60'])}",
        "plan": plan, "price": price, "newplan": newplan, "newprice": newprice, "diff": newprice - price,
        "device": rng.choice(devices), "month": rng.choice(MONTHS), "day": day, "nth_day": _ordinal(day),
        "days": rng.choice([2, 3, 5, 7, 10]), "offer": rng.choice([10, 15, 20]), "city": rng.choice(CITIES), "last4": f"{rng.randint(0, 9999):04d}",
        "street_address": f"{rng.randint(3, 180)} {rng.choice(STREETS)}", "postcode": f"{rng.randint(10000, 99999)}",
        "email": f"{first.lower()}.{last.lower()}{index % 97}@example.com",
        "daypart": rng.choice(["morning", "afternoon", "evening"]),
    }


def _customer(rng: random.Random, text: str) -> str:
    """Sometimes start a customer line with a spoken filler, as people do."""
    first_word = text.split(" ", 1)[0].rstrip(",.!?")
    if first_word in LOWERABLE and rng.random() < 0.25:
        return rng.choice(FILLERS) + text[0].lower() + text[1:]
    return text


def _outcome(rng: random.Random, topic: dict[str, Any]) -> tuple[str, str]:
    """The (agent, customer) exchange that ends the call, for one of ``OUTCOMES``."""
    ending = rng.choices(list(OUTCOMES), weights=list(OUTCOMES.values()))[0]
    if ending == "resolved":
        agent, customer = rng.choice(topic["resolve"])
        return f"{agent} {rng.choice(RESOLVED_MARKS)}", customer
    if ending == "escalated":
        agent, customer = rng.choice(topic["escalate"])
        return f"{rng.choice(ESCALATED_MARKS)} {agent}", customer
    return rng.choice(CALLBACKS if ending == "callback_scheduled" else UNRESOLVED)


def _dialogue(rng: random.Random, topic: dict[str, Any], channel: str) -> list[tuple[str, str]]:
    """(speaker, template) for each turn of one call, between MIN_TURNS and MAX_TURNS long."""
    head = [("Agent", rng.choice(GREETINGS)), ("Customer", rng.choice(topic["open"]))]
    verify: list[tuple[str, str]] = []
    if channel == "phone" or rng.random() < 0.7:
        pairs = [rng.choice(VERIFY)] + ([rng.choice(VERIFY_MORE)] if rng.random() < 0.5 else [])
        verify = [turn for a, c in pairs for turn in (("Agent", a), ("Customer", c))]
    picked = sorted(rng.sample(range(len(topic["work"])), rng.randint(0, len(topic["work"]))))
    work_pairs = [pair for i in picked
                  for pair in (topic["work"][i] if isinstance(topic["work"][i], list) else [topic["work"][i]])]
    if rng.random() < 0.4:
        work_pairs.insert(rng.randint(min(1, len(work_pairs)), len(work_pairs)), rng.choice(HOLD))
    outcome = [_outcome(rng, topic)]
    follow_pool = topic["follow"] + GENERIC_FOLLOW
    follows = rng.sample(follow_pool, rng.choice([0, 0, 1, 1, 2, 3]))
    close = [("Agent", rng.choice(CLOSE_AGENT)), ("Customer", rng.choice(CLOSE_CUSTOMER))]
    if rng.random() < 0.6:
        close.append(("Agent", rng.choice(GOODBYE)))
    fixed = len(head) + len(verify) + 2 * len(outcome) + 2 * len(follows) + len(close)
    work_pairs = work_pairs[:max(0, (MAX_TURNS - fixed) // 2)]
    turns = head + verify
    turns += [turn for a, c in work_pairs + outcome for turn in (("Agent", a), ("Customer", c))]
    turns += [turn for c, a in follows for turn in (("Customer", c), ("Agent", a))]
    merged: list[tuple[str, str]] = []
    # A speaker who goes on (thanks, then a follow-up question) is one turn, as diarization gives it.
    for speaker, text in turns + close:
        if merged and merged[-1][0] == speaker:
            merged[-1] = (speaker, f"{merged[-1][1]} {text}")
        else:
            merged.append((speaker, text))
    return merged


def _timed_turns(rng: random.Random, lines: list[tuple[str, str]], channel: str) -> list[dict[str, Any]]:
    """Speech (or typing, for chat) at a plausible pace with pauses; holds add a long gap."""
    words_per_second = 0.8 if channel == "chat" else 2.6
    clock = rng.uniform(0.5, 3.0)
    hold_requests = {a for a, _ in HOLD}
    turns = []
    for i, (speaker, text) in enumerate(lines):
        duration = len(text.split()) / words_per_second + rng.uniform(0.3, 1.2)
        turns.append({"speaker": speaker, "text": text, "start": round(clock, 2),
                      "end": round(clock + duration, 2)})
        # The silence after the customer agrees to a hold is the hold itself.
        held = i > 0 and lines[i - 1][1] in hold_requests
        clock += duration + (rng.uniform(25, 120) if held else rng.uniform(0.2, 1.5 if channel != "chat" else 6))
    return turns


def make_call(rng: random.Random, index: int) -> dict[str, Any]:
    """One transcript record: id, turns (or text) and metadata."""
    topic_name = rng.choice(sorted(TOPICS))
    topic = TOPICS[topic_name]
    channel = rng.choice(CHANNELS)
    ctx = _context(rng, index, topic.get("devices", HOME_DEVICES))
    lines = [(speaker, template.format(**ctx)) for speaker, template in _dialogue(rng, topic, channel)]
    if channel != "chat":  # fillers are spoken, not typed
        lines = [(s, _customer(rng, t) if s == "Customer" else t) for s, t in lines]
    turns = _timed_turns(rng, lines, channel)
    metadata = {"queue": topic["queue"], "language": "en-US",
                "duration_seconds": int(turns[-1]["end"] + rng.uniform(1, 8)),
                "agent_id": f"AG-{100 + AGENTS.index(ctx['agent']) * 7 + rng.randint(0, 6)}",
                "channel": channel}
    record: dict[str, Any] = {"id": f"call-{index:05d}"}
    if rng.random() < TEXT_SHARE:
        record["text"] = "\n".join(f"{t['speaker']}: {t['text']}" for t in turns)
    else:
        record["turns"] = turns
    record["metadata"] = metadata
    return record


def generate(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """``count`` transcripts; the same (count, seed) always gives the same records."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    rng = random.Random(seed)
    return [make_call(rng, i) for i in range(1, count + 1)]


def render(records: list[dict[str, Any]]) -> str:
    """JSONL text: one compact record per line, UTF-8 kept as is."""
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.samples.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of transcripts")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed, same output)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSONL file to write ('-' for stdout)")
    args = parser.parse_args(argv)
    try:
        text = render(generate(args.count, args.seed))
    except ValueError as exc:
        parser.error(str(exc))
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.count} transcripts to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
